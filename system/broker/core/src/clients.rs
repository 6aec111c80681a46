//! Producer and consumer channels by group, from HEART_BEAT; batch queue locks for orderly
//! consumption.

use std::collections::{BTreeMap, BTreeSet};

use rmq_proto::body::{ConsumerData, MessageQueue, SubscriptionData};
use rmq_proto::ConnId;

/// Most clients tracked per group.
pub const GROUP_MEMBERS_MAX: usize = 10_000;
/// A queue lock not renewed for this long lapses (rocketmq.broker.rebalance.lockMaxLiveTime).
pub const LOCK_MAX_LIVE_MS: u64 = 60_000;

/// One consumer client of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerClient {
    /// Connection it heartbeats on.
    pub conn: ConnId,
    /// Last heartbeat.
    pub last_update_ms: u64,
    /// What it declared.
    pub data: ConsumerData,
}

/// Clients by group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClientManager {
    /// group → client id → consumer.
    consumers: BTreeMap<String, BTreeMap<String, ConsumerClient>>,
    /// group → client id → (conn, last heartbeat).
    producers: BTreeMap<String, BTreeMap<String, (ConnId, u64)>>,
    /// group → queue → (client id, last lock renewal).
    locks: BTreeMap<String, BTreeMap<MessageQueue, (String, u64)>>,
}

impl ClientManager {
    /// Records a consumer heartbeat; returns true when the group's membership changed.
    pub fn register_consumer(&mut self, now_ms: u64, conn: ConnId, client_id: &str, data: ConsumerData) -> bool {
        let group = self.consumers.entry(data.group_name.clone()).or_default();
        if !group.contains_key(client_id) && group.len() >= GROUP_MEMBERS_MAX {
            return false;
        }
        group
            .insert(client_id.to_string(), ConsumerClient { conn, last_update_ms: now_ms, data })
            .is_none_or(|old| old.conn != conn)
    }

    /// Records a producer heartbeat.
    pub fn register_producer(&mut self, now_ms: u64, conn: ConnId, client_id: &str, group: &str) {
        self.producers.entry(group.to_string()).or_default().insert(client_id.to_string(), (conn, now_ms));
    }

    /// The producers of `group`: client id → (connection, last heartbeat).
    pub fn producers(&self, group: &str) -> Option<&BTreeMap<String, (ConnId, u64)>> {
        self.producers.get(group)
    }

    /// The connection of the producer of `group` heard from last (ties: the lowest client id).
    pub fn live_producer(&self, group: &str) -> Option<ConnId> {
        let members = self.producers.get(group)?;
        members.values().rev().max_by_key(|(_, last)| *last).map(|(conn, _)| *conn)
    }

    /// Removes a client from a consumer group; returns true when it was a member.
    pub fn unregister_consumer(&mut self, group: &str, client_id: &str) -> bool {
        let removed = self.consumers.get_mut(group).is_some_and(|g| g.remove(client_id).is_some());
        if self.consumers.get(group).is_some_and(BTreeMap::is_empty) {
            self.consumers.remove(group);
        }
        removed
    }

    /// Removes a client from a producer group.
    pub fn unregister_producer(&mut self, group: &str, client_id: &str) {
        if let Some(g) = self.producers.get_mut(group) {
            g.remove(client_id);
            if g.is_empty() {
                self.producers.remove(group);
            }
        }
    }

    /// Drops every client on `conn`; returns the consumer groups whose membership changed.
    pub fn remove_conn(&mut self, conn: ConnId) -> Vec<String> {
        self.retain(|c, _| c != conn)
    }

    /// Drops clients silent for `expiry_ms`; returns consumer groups that changed.
    pub fn expire(&mut self, now_ms: u64, expiry_ms: u64) -> Vec<String> {
        self.retain(|_, last| now_ms.saturating_sub(last) <= expiry_ms)
    }

    fn retain(&mut self, keep: impl Fn(ConnId, u64) -> bool) -> Vec<String> {
        let mut changed = Vec::new();
        for (group, members) in self.consumers.iter_mut() {
            let before = members.len();
            members.retain(|_, c| keep(c.conn, c.last_update_ms));
            if members.len() != before {
                changed.push(group.clone());
            }
        }
        self.consumers.retain(|_, m| !m.is_empty());
        for members in self.producers.values_mut() {
            members.retain(|_, (c, last)| keep(*c, *last));
        }
        self.producers.retain(|_, m| !m.is_empty());
        changed
    }

    /// Sorted client ids of a consumer group.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers.get(group).map(|g| g.keys().cloned().collect()).unwrap_or_default()
    }

    /// Connections of a consumer group's members.
    pub fn consumer_conns(&self, group: &str) -> Vec<ConnId> {
        let set: BTreeSet<ConnId> =
            self.consumers.get(group).map(|g| g.values().map(|c| c.conn).collect()).unwrap_or_default();
        set.into_iter().collect()
    }

    /// A consumer group's members.
    pub fn consumers(&self, group: &str) -> Option<&BTreeMap<String, ConsumerClient>> {
        self.consumers.get(group)
    }

    /// All consumer group names.
    pub fn consumer_groups(&self) -> Vec<String> {
        self.consumers.keys().cloned().collect()
    }

    /// The subscription a group declared for `topic` (from any member).
    pub fn subscription(&self, group: &str, topic: &str) -> Option<&SubscriptionData> {
        self.consumers.get(group)?.values().flat_map(|c| c.data.subscription_data_set.iter()).find(|s| s.topic == topic)
    }

    /// Locks `mqs` for `client_id`; returns the queues it now holds.
    pub fn lock(
        &mut self,
        now_ms: u64,
        max_live_ms: u64,
        group: &str,
        client_id: &str,
        mqs: &[MessageQueue],
    ) -> Vec<MessageQueue> {
        let locks = self.locks.entry(group.to_string()).or_default();
        let mut held = Vec::new();
        for mq in mqs {
            let free = match locks.get(mq) {
                None => true,
                Some((owner, at)) => owner == client_id || now_ms.saturating_sub(*at) > max_live_ms,
            };
            if free {
                locks.insert(mq.clone(), (client_id.to_string(), now_ms));
                held.push(mq.clone());
            }
        }
        held
    }

    /// Releases `mqs` held by `client_id`.
    pub fn unlock(&mut self, group: &str, client_id: &str, mqs: &[MessageQueue]) {
        if let Some(locks) = self.locks.get_mut(group) {
            for mq in mqs {
                if locks.get(mq).is_some_and(|(owner, _)| owner == client_id) {
                    locks.remove(mq);
                }
            }
        }
    }
}
