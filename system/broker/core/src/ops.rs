//! Operator requests: moving a group's position (INVOKE_BROKER_TO_RESET_OFFSET, for mqadmin
//! resetOffsetByTime and skipAccumulatedMessage), subscription groups, the broker's settings,
//! producer connections and every group's progress.

use std::collections::BTreeMap;

use rmq_proto::body::{to_json, MessageQueue, ResetOffsetBody};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::ResetOffsetRequestHeader;
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_store::Directory;

use crate::config::LIVE_KEYS;
use crate::groups::{self, SubscriptionGroupConfig};
use crate::{checks, ok, reply, BrokerCore, Event, Output};

impl<D: Directory> BrokerCore<D> {
    /// Moves `group`'s offsets on `topic` to the first message stored at or after the
    /// timestamp (-1: the end), only backward unless forced, as RocketMQ's Broker2Client does;
    /// commits them here (so a consumer that starts later begins there too), then tells every
    /// live member of the group (RESET_CONSUMER_CLIENT_OFFSET, one-way) so it re-seats at once.
    /// Answers the new offsets.
    pub(crate) fn reset_offset(&mut self, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let h: ResetOffsetRequestHeader =
            req.decode_header().map_err(|e| reply(req, ResponseCode::InvalidParameter, e.to_string()))?;
        checks::topic(req, &h.topic)?;
        checks::consumer_group(req, &h.group)?;
        if self.config.broker_role == crate::BrokerRole::Slave {
            return Err(reply(req, ResponseCode::ServiceNotAvailable, "this broker is a slave; reset on its master"));
        }
        if h.timestamp < -1 {
            return Err(reply(req, ResponseCode::InvalidParameter, "timestamp must be a store time in ms, or -1"));
        }
        let Some(tc) = self.topics.get(&h.topic) else {
            return Err(reply(req, ResponseCode::TopicNotExist, format!("topic[{}] not exist", h.topic)));
        };
        let queues = tc.write_queue_nums.max(tc.read_queue_nums);
        let mut body = ResetOffsetBody::default();
        for qid in 0..queues {
            let target = if h.timestamp == -1 {
                self.store.max_queue_offset(&h.topic, qid)
            } else {
                self.store.queue_offset_by_time(&h.topic, qid, h.timestamp)
            };
            let current = self.offsets.get(&h.group, &h.topic, qid);
            let offset = match current {
                Some(c) if !h.is_force && target >= c => c,
                _ => target,
            };
            self.offsets.reset(&h.group, &h.topic, qid, offset);
            let (group, topic) = (h.group.clone(), h.topic.clone());
            self.event(|| Event::ConsumerOffsetReset { group, topic, queue_id: qid, offset });
            let mq =
                MessageQueue { topic: h.topic.clone(), broker_name: self.config.broker_name.clone(), queue_id: qid };
            body.offset_table.insert(mq, offset as i64);
        }
        let wire = body.to_fastjson();
        let members = self.clients.consumer_conns(&h.group);
        tracing::info!(
            group = %h.group,
            topic = %h.topic,
            timestamp = h.timestamp,
            force = h.is_force,
            live_members = members.len(),
            "consumer offsets reset by an operator"
        );
        for conn in members {
            let cmd = RemotingCommand::request_with(RequestCode::ResetConsumerClientOffset, 0, &h)
                .with_body(wire.clone())
                .oneway();
            self.outputs.push_back(Output::Transmit { conn, cmd });
        }
        Ok(ok(req).with_body(wire))
    }
}

impl<D: Directory> BrokerCore<D> {
    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: a group's settings (see [`crate::groups`]).
    pub(crate) fn update_sub_group(&mut self, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let c = SubscriptionGroupConfig::from_body(&req.body)
            .map_err(|why| reply(req, ResponseCode::InvalidParameter, why))?;
        let name = c.group_name.clone();
        if !self.groups.upsert(c) {
            return Err(reply(req, ResponseCode::SystemError, "subscription group table full"));
        }
        self.groups
            .persist(self.store.directory_mut())
            .map_err(|e| reply(req, ResponseCode::SystemError, format!("persisting {}: {e}", groups::GROUPS_PATH)))?;
        tracing::info!(group = %name, "subscription group updated");
        Ok(ok(req))
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG.
    pub(crate) fn all_sub_groups(&self, req: &RemotingCommand) -> RemotingCommand {
        let table: BTreeMap<&str, &SubscriptionGroupConfig> =
            self.groups.all().map(|g| (g.group_name.as_str(), g)).collect();
        ok(req).with_body(to_json(&serde_json::json!({ "subscriptionGroupTable": table })))
    }

    /// DELETE_SUBSCRIPTIONGROUP: forgets a group's settings, and with `cleanOffset=true` its
    /// offsets too (so it starts over by its consumeFromWhere).
    pub(crate) fn delete_sub_group(&mut self, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let group = req.ext("groupName").unwrap_or_default().to_string();
        checks::consumer_group(req, &group)?;
        let had = self.groups.remove(&group);
        let offsets = if req.ext("cleanOffset") == Some("true") { self.offsets.remove_group(&group) } else { 0 };
        if !had && offsets == 0 {
            return Err(reply(
                req,
                ResponseCode::SubscriptionGroupNotExist,
                format!("subscription group {group} not exist"),
            ));
        }
        self.groups
            .persist(self.store.directory_mut())
            .map_err(|e| reply(req, ResponseCode::SystemError, format!("persisting {}: {e}", groups::GROUPS_PATH)))?;
        self.persist_offsets();
        tracing::info!(%group, offsets_removed = offsets, "subscription group deleted");
        Ok(ok(req))
    }

    /// GET_BROKER_CONFIG: the settings in broker.conf terms, one `key=value` per line.
    pub(crate) fn broker_config(&self, req: &RemotingCommand) -> RemotingCommand {
        let text: String = self.config.to_properties().into_iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        ok(req).with_body(text.into_bytes())
    }

    /// UPDATE_BROKER_CONFIG: `key=value` lines, each one of [`LIVE_KEYS`], applied together or
    /// not at all. Applied to the running broker only: the answer's remark says so, since
    /// broker.conf still holds the old values for the next start.
    pub(crate) fn update_broker_config(&mut self, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| reply(req, ResponseCode::InvalidParameter, "body is not UTF-8"))?;
        let mut next = self.config.clone();
        let mut changed = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else {
                return Err(reply(req, ResponseCode::InvalidParameter, format!("{line}: expected key=value")));
            };
            let (key, value) = (key.trim(), value.trim());
            if !LIVE_KEYS.contains(&key) {
                let why = format!("{key} cannot change on a running broker: set it in broker.conf and restart");
                return Err(reply(req, ResponseCode::InvalidParameter, why));
            }
            next.set_live(key, value).map_err(|want| {
                reply(req, ResponseCode::InvalidParameter, format!("{key}={value}: expected {want}"))
            })?;
            changed.push(format!("{key}={value}"));
        }
        if changed.is_empty() {
            return Err(reply(req, ResponseCode::InvalidParameter, "no key=value lines"));
        }
        self.config = next;
        tracing::info!(changed = %changed.join(" "), "broker config updated");
        Ok(reply(
            req,
            ResponseCode::Success,
            format!("applied {}; not written to broker.conf: a restart reverts it", changed.join(", ")),
        ))
    }

    /// GET_PRODUCER_CONNECTION_LIST: the producers of a group that heartbeat here.
    pub(crate) fn producer_connections(&self, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let group = req.ext("producerGroup").unwrap_or_default().to_string();
        checks::producer_group(req, &group)?;
        let Some(members) = self.clients.producers(&group).filter(|m| !m.is_empty()) else {
            return Err(reply(req, ResponseCode::SystemError, format!("the producer group[{group}] not exist")));
        };
        let list: Vec<serde_json::Value> = members
            .iter()
            .map(|(id, (conn, last))| {
                serde_json::json!({
                    "clientId": id,
                    "clientAddr": self.peers.get(conn).map(|p| p.to_string()).unwrap_or_default(),
                    "lastUpdateTimestamp": last,
                })
            })
            .collect();
        Ok(ok(req).with_body(to_json(&serde_json::json!({ "connectionSet": list }))))
    }

    /// GET_BROKER_CONSUME_STATS: every group's progress on every topic it committed on here.
    pub(crate) fn broker_consume_stats(&self, req: &RemotingCommand) -> RemotingCommand {
        let mut list = Vec::new();
        let mut total_diff = 0i64;
        for ((topic, group), per_queue) in self.offsets.iter() {
            let queues = self.topics.get(topic).map_or(0, |t| t.write_queue_nums.max(t.read_queue_nums));
            let mut diff = 0i64;
            let rows: Vec<serde_json::Value> = (0..queues)
                .map(|qid| {
                    let broker_offset = self.store.max_queue_offset(topic, qid) as i64;
                    let consumer_offset = per_queue.get(&qid).map_or(0, |o| *o as i64);
                    diff += (broker_offset - consumer_offset).max(0);
                    serde_json::json!({ "queueId": qid, "brokerOffset": broker_offset, "consumerOffset": consumer_offset })
                })
                .collect();
            total_diff += diff;
            list.push(serde_json::json!({ "group": group, "topic": topic, "diff": diff, "queues": rows }));
        }
        let body = serde_json::json!({ "brokerAddr": self.config.broker_addr, "totalDiff": total_diff, "consumeStatsList": list });
        ok(req).with_body(to_json(&body))
    }

    /// VIEW_BROKER_STATS_DATA: one counter since the broker started, `statsName`
    /// TOPIC_PUT_NUMS (`statsKey` = topic) or GROUP_GET_NUMS (`statsKey` = `topic@group`).
    /// Our JSON shape: `{"statsName":..,"statsKey":..,"total":N}`; a rate is two readings apart.
    pub(crate) fn stats_data(&self, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let (name, key) = (req.ext("statsName").unwrap_or_default(), req.ext("statsKey").unwrap_or_default());
        let total = match name {
            "TOPIC_PUT_NUMS" => self.stats.topic_puts.get(key).copied().unwrap_or(0),
            "GROUP_GET_NUMS" => {
                let Some((topic, group)) = key.split_once('@') else {
                    return Err(reply(
                        req,
                        ResponseCode::InvalidParameter,
                        "GROUP_GET_NUMS takes statsKey=topic@group",
                    ));
                };
                self.stats.group_gets.get(&(group.to_string(), topic.to_string())).copied().unwrap_or(0)
            }
            other => {
                let why = format!("statsName {other:?}: only TOPIC_PUT_NUMS and GROUP_GET_NUMS are kept");
                return Err(reply(req, ResponseCode::InvalidParameter, why));
            }
        };
        Ok(ok(req).with_body(to_json(&serde_json::json!({ "statsName": name, "statsKey": key, "total": total }))))
    }
}
