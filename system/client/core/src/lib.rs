//! Client decisions without I/O: which queue a send goes to, whether a failed send is retried
//! and where, which queues a consumer owns after a rebalance, and which consumer offset is safe
//! to commit.
//!
//! # Layout
//! - [`PublishInfo`]: a topic's writable queues and the round-robin / avoid-failed selection.
//! - [`consumer`]: the push consumer's state machine (rebalance, pulls, in-flight, commits, send-back).
//! - [`producer`]: the producer's state machine (routes, attempts, timeouts, retries, heartbeats).
//! - [`retry`]: which send outcomes are retried.
//! - [`rebalance`]: AVG and circle allocation.
//! - [`ProcessQueue`]: in-flight messages of one queue; the committable offset.
//! - [`idempotent`]: the dedup rule of idempotent consumption (strong and weak).
//!
//! # Calling contract
//! ```
//! use rmq_client_core::{PublishInfo, rebalance::allocate_averagely, ProcessQueue};
//! use rmq_proto::body::{TopicRouteData, QueueData, BrokerData, MessageQueue};
//! let route = TopicRouteData {
//!     queue_datas: vec![QueueData { broker_name: "b".into(), read_queue_nums: 4, write_queue_nums: 4, perm: 6, topic_sys_flag: 0 }],
//!     broker_datas: vec![BrokerData { cluster: "c".into(), broker_name: "b".into(),
//!         broker_addrs: [(0, "127.0.0.1:10911".to_string())].into(), zone_name: None, enable_acting_master: false }],
//!     ..Default::default()
//! };
//! let mut info = PublishInfo::from_route("T", &route);
//! let first = info.select(None).unwrap().clone();
//! let second = info.select(Some(&first.broker_name)).unwrap(); // only one broker: reused
//! assert_ne!(first.queue_id, second.queue_id);
//! let mine = allocate_averagely(&info.queues, &["a".into(), "b".into()], "b");
//! assert_eq!(mine.len(), 2);
//! let mut pq = ProcessQueue::default();
//! pq.add(&[5, 6, 7]);
//! pq.remove(&[6, 7]);
//! assert_eq!(pq.committable(8), 5); // offset 5 is still in flight
//! ```

pub mod consumer;
pub mod idempotent;
pub mod producer;
pub mod rebalance;
pub mod retry;
pub mod transaction;

use std::collections::{BTreeMap, BTreeSet};

use rmq_proto::body::{MessageQueue, TopicRouteData};
use rmq_proto::codes::perm;

/// Most queues per broker a route may give a topic; a NameServer announcing more (a bug or a
/// hostile peer: the counts are plain integers in its JSON) is taken at this many, so a route
/// never makes the client allocate billions of queues.
pub const QUEUES_PER_BROKER_MAX: i32 = 65_536;

/// A topic's writable queues, and where the round-robin stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PublishInfo {
    /// Writable queues on brokers with a live master, sorted.
    pub queues: Vec<MessageQueue>,
    /// Broker name → master address.
    pub masters: BTreeMap<String, String>,
    /// Round-robin position.
    pub rotor: usize,
}

impl PublishInfo {
    /// Derives the writable queues from a route.
    pub fn from_route(topic: &str, route: &TopicRouteData) -> Self {
        let masters: BTreeMap<String, String> = route
            .broker_datas
            .iter()
            .filter_map(|b| b.master_addr().map(|a| (b.broker_name.clone(), a.to_string())))
            .collect();
        let mut queues = Vec::new();
        // An ordered topic's layout (orderTopicConf, "brokerName:queues;...") decides its
        // writable queues, as RocketMQ's client does.
        let order_conf = route.order_topic_conf.as_deref().filter(|c| !c.trim().is_empty());
        for item in order_conf.into_iter().flat_map(|c| c.split(';')) {
            let Some((broker, n)) = item.trim().split_once(':') else { continue };
            let Ok(n) = n.trim().parse::<i32>() else { continue };
            if masters.contains_key(broker.trim()) {
                for queue_id in 0..n.clamp(0, QUEUES_PER_BROKER_MAX) {
                    queues.push(MessageQueue { topic: topic.to_string(), broker_name: broker.trim().into(), queue_id });
                }
            }
        }
        for qd in route.queue_datas.iter().filter(|_| order_conf.is_none()) {
            if qd.perm & perm::WRITE == 0 || !masters.contains_key(&qd.broker_name) {
                continue;
            }
            for queue_id in 0..qd.write_queue_nums.clamp(0, QUEUES_PER_BROKER_MAX) {
                queues.push(MessageQueue { topic: topic.to_string(), broker_name: qd.broker_name.clone(), queue_id });
            }
        }
        queues.sort();
        PublishInfo { queues, masters, rotor: 0 }
    }

    /// Readable queues of a route (for consumers).
    pub fn readable_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
        let mut out = Vec::new();
        for qd in &route.queue_datas {
            if qd.perm & perm::READ == 0 {
                continue;
            }
            for queue_id in 0..qd.read_queue_nums.clamp(0, QUEUES_PER_BROKER_MAX) {
                out.push(MessageQueue { topic: topic.to_string(), broker_name: qd.broker_name.clone(), queue_id });
            }
        }
        out.sort();
        out
    }

    /// Next queue round-robin, skipping `avoid_broker` when another broker has queues.
    pub fn select(&mut self, avoid_broker: Option<&str>) -> Option<&MessageQueue> {
        if self.queues.is_empty() {
            return None;
        }
        let n = self.queues.len();
        for _ in 0..n {
            self.rotor = self.rotor.wrapping_add(1);
            let i = self.rotor % n;
            if avoid_broker != Some(self.queues[i].broker_name.as_str()) {
                return Some(&self.queues[i]);
            }
        }
        self.rotor = self.rotor.wrapping_add(1);
        Some(&self.queues[self.rotor % n])
    }

    /// Queue for an ordering key: hash(key) mod queue count (stable while the queue count is).
    pub fn select_by_key(&self, key: &str) -> Option<&MessageQueue> {
        if self.queues.is_empty() {
            return None;
        }
        let h = rmq_proto::java_string_hash(key).unsigned_abs() as usize;
        Some(&self.queues[h % self.queues.len()])
    }
}

/// Messages of one queue being consumed, by queue offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProcessQueue {
    in_flight: BTreeSet<u64>,
}

impl ProcessQueue {
    /// Marks offsets as delivered to the listener.
    pub fn add(&mut self, offsets: &[u64]) {
        self.in_flight.extend(offsets.iter().copied());
    }

    /// Marks offsets as done (consumed, or handed back for retry).
    pub fn remove(&mut self, offsets: &[u64]) {
        for o in offsets {
            self.in_flight.remove(o);
        }
    }

    /// Messages still in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// The offset safe to commit: the lowest in-flight offset, or `next_pull_offset` when idle.
    pub fn committable(&self, next_pull_offset: u64) -> u64 {
        self.in_flight.first().copied().unwrap_or(next_pull_offset).min(next_pull_offset)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rmq_proto::body::{BrokerData, QueueData};

    /// A route of two queues per broker; a broker without master has only a slave (id 1).
    pub(crate) fn route(brokers: &[(&str, bool)]) -> TopicRouteData {
        TopicRouteData {
            queue_datas: brokers
                .iter()
                .map(|(b, _)| QueueData {
                    broker_name: b.to_string(),
                    read_queue_nums: 2,
                    write_queue_nums: 2,
                    perm: 6,
                    topic_sys_flag: 0,
                })
                .collect(),
            broker_datas: brokers
                .iter()
                .map(|(b, has_master)| BrokerData {
                    cluster: "c".into(),
                    broker_name: b.to_string(),
                    broker_addrs: if *has_master {
                        [(0, format!("{b}:1"))].into()
                    } else {
                        [(1, format!("{b}:2"))].into()
                    },
                    zone_name: None,
                    enable_acting_master: false,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn brokers_without_master_take_no_writes() {
        let info = PublishInfo::from_route("T", &route(&[("a", true), ("b", false)]));
        assert!(info.queues.iter().all(|q| q.broker_name == "a"));
        assert_eq!(PublishInfo::readable_queues("T", &route(&[("a", true), ("b", false)])).len(), 4);
    }

    #[test]
    fn an_order_topic_conf_decides_the_writable_queues() {
        let mut r = route(&[("a", true), ("b", true), ("c", false)]);
        r.order_topic_conf = Some("a:3; c:4;b:junk".into());
        let info = PublishInfo::from_route("T", &r);
        let got: Vec<(&str, i32)> = info.queues.iter().map(|q| (q.broker_name.as_str(), q.queue_id)).collect();
        assert_eq!(got, [("a", 0), ("a", 1), ("a", 2)], "listed brokers with a master only");
        assert_eq!(PublishInfo::readable_queues("T", &r).len(), 6, "reads still follow the queue data");
    }

    #[test]
    fn select_avoids_the_failed_broker() {
        let mut info = PublishInfo::from_route("T", &route(&[("a", true), ("b", true)]));
        for _ in 0..10 {
            assert_eq!(info.select(Some("a")).unwrap().broker_name, "b");
        }
        let mut seen = BTreeSet::new();
        for _ in 0..4 {
            seen.insert(info.select(None).unwrap().clone());
        }
        assert_eq!(seen.len(), 4, "round-robin visits every queue");
    }

    #[test]
    fn key_selection_is_stable() {
        let info = PublishInfo::from_route("T", &route(&[("a", true), ("b", true)]));
        let q1 = info.select_by_key("order-42").cloned();
        assert_eq!(info.select_by_key("order-42").cloned(), q1);
    }

    #[test]
    fn absurd_queue_counts_in_a_route_are_bounded() {
        let mut r = route(&[("a", true)]);
        r.queue_datas[0].write_queue_nums = i32::MAX;
        r.queue_datas[0].read_queue_nums = i32::MIN;
        assert_eq!(PublishInfo::from_route("T", &r).queues.len(), QUEUES_PER_BROKER_MAX as usize);
        assert!(PublishInfo::readable_queues("T", &r).is_empty());
    }
}
