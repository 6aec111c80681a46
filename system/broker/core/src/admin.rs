//! Client management (heartbeat, unregister, consumer lists, queue locks), consumer offsets,
//! topic administration, offset queries, statistics and NameServer registration.

use std::collections::BTreeMap;

use rmq_proto::body::{
    from_json, to_json, ConsumeStats, ConsumerIdList, HeartbeatData, LockBatchBody, LockBatchResult, MessageQueue,
    QueueProgress, RegisterBrokerBody, TopicConfig,
};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::{
    CommandHeader, ConsumeStatsRequestHeader, ConsumerGroupRequestHeader, CreateTopicRequestHeader,
    OffsetResponseHeader, QueryConsumerOffsetRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    QueueRequestHeader, RegisterBrokerRequestHeader, SearchOffsetRequestHeader, TopicRequestHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rmq_proto::message::parse_offset_msg_id;
use rmq_proto::{ConnId, RemotingCommand, ResponseCode};
use rmq_store::Directory;

use crate::topics::TopicRefused;
use crate::{checks, ok, reply, BrokerCore, Event, Output};

/// Most messages one QUERY_MESSAGE returns (RocketMQ's defaultQueryMaxNum is 32; clients ask
/// for up to 64).
const QUERY_MAX_MESSAGES: usize = 64;

/// Topic creations within this window share one persist and one registration.
pub const TOPIC_COALESCE_MS: u64 = 100;

impl<D: Directory> BrokerCore<D> {
    pub(crate) fn heartbeat(&mut self, now_ms: u64, conn: ConnId, req: &RemotingCommand) -> Option<RemotingCommand> {
        let hb: HeartbeatData = match from_json(&req.body) {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, format!("bad heartbeat body: {e}"))),
        };
        // Every name is checked before anything is registered or created.
        if let Err(resp) = check_heartbeat_names(req, &hb) {
            return Some(resp);
        }
        let mut changed = Vec::new();
        for cd in hb.consumer_data_set {
            // A valid group over 120 characters has no valid retry topic: none is created.
            if let Ok(retry) = rmq_proto::names::retry_topic(&cd.group_name) {
                if self.topics.get(&retry).is_none() {
                    // A full topic table leaves the group without a retry topic until there
                    // is room; send-back then answers the error.
                    let _ = self.create_topic(now_ms, TopicConfig::new(&retry, 1));
                }
            }
            let group = cd.group_name.clone();
            if self.clients.register_consumer(now_ms, conn, &hb.client_id, cd) {
                changed.push(group);
            }
        }
        for pd in hb.producer_data_set {
            self.clients.register_producer(now_ms, conn, &hb.client_id, &pd.group_name);
        }
        self.notify_groups(now_ms, changed);
        Some(ok(req).with_ext("IS_SUB_CHANGE", "false").with_ext("IS_SUPPORT_HEART_BEAT_V2", "false"))
    }

    pub(crate) fn unregister_client(
        &mut self,
        now_ms: u64,
        _conn: ConnId,
        req: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        let h: UnregisterClientRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        let names = h
            .producer_group
            .as_deref()
            .map_or(Ok(()), |g| checks::producer_group(req, g))
            .and_then(|()| h.consumer_group.as_deref().map_or(Ok(()), |g| checks::consumer_group(req, g)));
        if let Err(resp) = names {
            return Some(resp);
        }
        if let Some(g) = &h.producer_group {
            self.clients.unregister_producer(g, &h.client_id);
        }
        if let Some(g) = &h.consumer_group {
            if self.clients.unregister_consumer(g, &h.client_id) {
                self.notify_groups(now_ms, vec![g.clone()]);
            }
        }
        Some(ok(req))
    }

    /// Tells every member of each changed group to rebalance.
    pub(crate) fn notify_groups(&mut self, _now_ms: u64, groups: Vec<String>) {
        for group in groups {
            let members = self.clients.consumer_ids(&group).len();
            tracing::info!(%group, members, "consumer group membership changed");
            self.event(|| Event::GroupMembershipChanged { group: group.clone(), members });
            if !self.groups.get(&group).notify_consumer_ids_changed_enable {
                continue;
            }
            for conn in self.clients.consumer_conns(&group) {
                let cmd = RemotingCommand::request(RequestCode::NotifyConsumerIdsChanged, 0)
                    .with_header(&ConsumerGroupRequestHeader { consumer_group: group.clone() })
                    .oneway();
                self.outputs.push_back(Output::Transmit { conn, cmd });
            }
        }
    }

    pub(crate) fn consumer_list(&self, req: &RemotingCommand) -> Option<RemotingCommand> {
        let h: ConsumerGroupRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        if let Err(resp) = checks::consumer_group(req, &h.consumer_group) {
            return Some(resp);
        }
        let ids = self.clients.consumer_ids(&h.consumer_group);
        if ids.is_empty() {
            return Some(reply(
                req,
                ResponseCode::SystemError,
                format!("no consumer for this group, {}", h.consumer_group),
            ));
        }
        Some(ok(req).with_body(to_json(&ConsumerIdList { consumer_id_list: ids })))
    }

    pub(crate) fn query_consumer_offset(&self, req: &RemotingCommand) -> Option<RemotingCommand> {
        let h: QueryConsumerOffsetRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        if let Err(resp) = checks::consumer_group(req, &h.consumer_group).and_then(|()| checks::topic(req, &h.topic)) {
            return Some(resp);
        }
        let offset = match self.offsets.get(&h.consumer_group, &h.topic, h.queue_id) {
            Some(o) => o,
            // A brand-new group starts at 0 while the queue still holds its first message.
            None if self.store.min_queue_offset(&h.topic, h.queue_id) == 0
                || req.ext("setZeroIfNotFound") == Some("true") =>
            {
                0
            }
            None => {
                return Some(reply(
                    req,
                    ResponseCode::QueryNotFound,
                    "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
                ))
            }
        };
        Some(ok(req).with_header(&OffsetResponseHeader { offset: offset as i64 }))
    }

    pub(crate) fn update_consumer_offset(&mut self, _now_ms: u64, req: &RemotingCommand) -> Option<RemotingCommand> {
        let h: UpdateConsumerOffsetRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        if let Err(resp) = checks::consumer_group(req, &h.consumer_group).and_then(|()| checks::topic(req, &h.topic)) {
            return Some(resp);
        }
        if h.commit_offset < 0 {
            return Some(reply(req, ResponseCode::InvalidParameter, "commitOffset must not be negative"));
        }
        match self.commit_offset(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset as u64) {
            OffsetCommit::Moved | OffsetCommit::Unchanged => Some(ok(req)),
            OffsetCommit::Backward { committed } => Some(reply(
                req,
                ResponseCode::SystemError,
                format!(
                    "commitOffset {} is behind the committed offset {committed}: consumer offsets only move forward here",
                    h.commit_offset
                ),
            )),
            OffsetCommit::BeyondQueueEnd { max_offset } => Some(reply(
                req,
                ResponseCode::SystemError,
                format!(
                    "commitOffset {} is beyond the queue's max offset {max_offset}: the consumer's position is stale (the queue was recovered shorter); re-seat from the committed offset",
                    h.commit_offset
                ),
            )),
            OffsetCommit::Refused => Some(reply(req, ResponseCode::SystemError, "offset table full")),
        }
    }

    /// Commits a consumer offset, forward only and never past the queue's max offset: a commit
    /// beyond it comes from a position that predates a recovery which shortened the queue, and
    /// capping it would skip the messages stored since at the recovered offsets.
    pub(crate) fn commit_offset(&mut self, group: &str, topic: &str, queue_id: i32, offset: u64) -> OffsetCommit {
        let max_offset = self.store.max_queue_offset(topic, queue_id);
        if offset > max_offset {
            return OffsetCommit::BeyondQueueEnd { max_offset };
        }
        let committed = self.offsets.get(group, topic, queue_id);
        if self.offsets.commit(group, topic, queue_id, offset) {
            let (group, topic) = (group.to_string(), topic.to_string());
            self.event(|| Event::ConsumerOffsetCommitted { group, topic, queue_id, offset });
            return OffsetCommit::Moved;
        }
        match committed {
            Some(c) if c == offset => OffsetCommit::Unchanged,
            Some(c) => OffsetCommit::Backward { committed: c },
            None => OffsetCommit::Refused,
        }
    }

    pub(crate) fn lock_batch(&mut self, now_ms: u64, req: &RemotingCommand) -> Option<RemotingCommand> {
        let body: LockBatchBody = match from_json(&req.body) {
            Ok(b) => b,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, format!("bad lock body: {e}"))),
        };
        if let Err(resp) = check_lock_names(req, &body) {
            return Some(resp);
        }
        let held = self.clients.lock(
            now_ms,
            self.config.rebalance_lock_max_live_ms,
            &body.consumer_group,
            &body.client_id,
            &body.mq_set,
        );
        Some(ok(req).with_body(to_json(&LockBatchResult { lock_ok_mq_set: held })))
    }

    pub(crate) fn unlock_batch(&mut self, req: &RemotingCommand) -> Option<RemotingCommand> {
        let body: LockBatchBody = match from_json(&req.body) {
            Ok(b) => b,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, format!("bad unlock body: {e}"))),
        };
        if let Err(resp) = check_lock_names(req, &body) {
            return Some(resp);
        }
        self.clients.unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        Some(ok(req))
    }

    /// Creates `topic` with `queues` queues unless it exists.
    pub(crate) fn ensure_topic(&mut self, now_ms: u64, topic: &str, queues: i32) -> Result<(), (ResponseCode, String)> {
        if self.topics.get(topic).is_none() {
            self.create_topic(now_ms, TopicConfig::new(topic, queues))
                .map_err(|e| (ResponseCode::SystemError, format!("cannot create {topic}: {e}")))?;
        }
        Ok(())
    }

    /// Creates or updates a topic, persists the table and schedules a registration. The one
    /// way into the topic table: an invalid name is refused here whatever the entry point.
    pub(crate) fn create_topic(&mut self, now_ms: u64, tc: TopicConfig) -> Result<(), TopicRefused> {
        let topic = tc.topic_name.clone();
        self.topics.upsert(now_ms, tc)?;
        // Coalesce bursts of creations into one persist and one registration shortly after.
        self.topics_dirty = true;
        self.next_register_ms = self.next_register_ms.min(now_ms + TOPIC_COALESCE_MS);
        self.event(|| Event::TopicUpdated { topic });
        Ok(())
    }

    /// The REGISTER_BROKER request carrying the whole topic table.
    pub(crate) fn registration(&self) -> RemotingCommand {
        let body = to_json(&RegisterBrokerBody {
            topic_config_serialize_wrapper: self.topics.wrapper(),
            filter_server_list: vec![],
        });
        let h = RegisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.config.broker_addr.clone(),
            cluster_name: self.config.cluster_name.clone(),
            ha_server_addr: self.config.ha_addr.clone(),
            broker_id: self.config.broker_id,
            compressed: Some(false),
            body_crc32: Some(crc32(&body)),
        };
        self.signed(RemotingCommand::request_with(RequestCode::RegisterBroker, 0, &h).with_body(body))
    }

    pub(crate) fn persist_topics(&mut self) {
        if self.topics_dirty && self.topics.persist(self.store.directory_mut()).is_ok() {
            self.topics_dirty = false;
        }
    }

    pub(crate) fn persist_offsets(&mut self) {
        let dir = self.store.directory_mut();
        let _ = self.offsets.persist(dir);
        let _ = self.delay.persist(dir);
    }

    /// Requests not handled elsewhere: topic admin, offset queries, stats.
    pub(crate) fn admin(&mut self, now_ms: u64, _conn: ConnId, req: &RemotingCommand) -> Option<RemotingCommand> {
        let resp = match req.request_code() {
            RequestCode::UpdateAndCreateTopic => self.update_topic(now_ms, req),
            RequestCode::DeleteTopicInBroker => self.delete_topic(now_ms, req),
            RequestCode::GetAllTopicConfig => Ok(ok(req).with_body(to_json(&self.topics.wrapper()))),
            RequestCode::GetAllConsumerOffset | RequestCode::GetAllDelayOffset => Ok(self.metadata_answer(req)),
            RequestCode::GetMaxOffset | RequestCode::GetMinOffset | RequestCode::GetEarliestMsgStoretime => {
                self.queue_offset_query(req)
            }
            RequestCode::SearchOffsetByTimestamp => self.search_offset(req),
            RequestCode::ViewMessageById => Ok(self.view_message(req)),
            RequestCode::QueryMessage => self.query_message(req),
            RequestCode::InvokeBrokerToResetOffset => self.reset_offset(req),
            RequestCode::UpdateAndCreateSubscriptionGroup => self.update_sub_group(req),
            RequestCode::GetAllSubscriptionGroupConfig => Ok(self.all_sub_groups(req)),
            RequestCode::DeleteSubscriptionGroup => self.delete_sub_group(req),
            RequestCode::GetBrokerConfig => Ok(self.broker_config(req)),
            RequestCode::UpdateBrokerConfig => self.update_broker_config(req),
            RequestCode::GetProducerConnectionList => self.producer_connections(req),
            RequestCode::GetBrokerConsumeStats => Ok(self.broker_consume_stats(req)),
            RequestCode::ViewBrokerStatsData => self.stats_data(req),
            RequestCode::GetConsumeStats => self.consume_stats(req),
            RequestCode::GetConsumerConnectionList => self.connection_list(req),
            RequestCode::GetBrokerRuntimeInfo => Ok(self.runtime_info(now_ms, req)),
            RequestCode::GetTopicStatsInfo => self.topic_stats(req),
            _ => Err(reply(
                req,
                ResponseCode::RequestCodeNotSupported,
                format!("request code {} not supported", req.code),
            )),
        };
        Some(resp.unwrap_or_else(|refused| refused))
    }

    fn update_topic(&mut self, now_ms: u64, req: &RemotingCommand) -> Answer {
        let h: CreateTopicRequestHeader = decode(req)?;
        checks::topic(req, &h.topic)?;
        if !(1..=1024).contains(&h.read_queue_nums) || !(1..=1024).contains(&h.write_queue_nums) {
            return Err(reply(req, ResponseCode::InvalidParameter, "queue counts must be within 1..=1024"));
        }
        let tc = TopicConfig {
            topic_name: h.topic.clone(),
            read_queue_nums: h.read_queue_nums,
            write_queue_nums: h.write_queue_nums,
            perm: h.perm,
            topic_filter_type: h.topic_filter_type,
            topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
            order: h.order,
            attributes: BTreeMap::new(),
        };
        // create_topic schedules one registration within TOPIC_COALESCE_MS: a script creating
        // thousands of topics costs one full registration per window, not one per topic.
        self.create_topic(now_ms, tc).map_err(|e| reply(req, ResponseCode::SystemError, e.to_string()))?;
        Ok(ok(req))
    }

    fn delete_topic(&mut self, now_ms: u64, req: &RemotingCommand) -> Answer {
        let h: TopicRequestHeader = decode(req)?;
        checks::topic(req, &h.topic)?;
        self.topics.remove(now_ms, &h.topic);
        self.topics_dirty = true;
        self.next_register_ms = now_ms;
        Ok(ok(req))
    }

    fn search_offset(&self, req: &RemotingCommand) -> Answer {
        let h: SearchOffsetRequestHeader = decode(req)?;
        checks::topic(req, &h.topic)?;
        let off = self.store.queue_offset_by_time(&h.topic, h.queue_id, h.timestamp);
        Ok(ok(req).with_header(&OffsetResponseHeader { offset: off as i64 }))
    }

    fn queue_offset_query(&self, req: &RemotingCommand) -> Answer {
        let h: QueueRequestHeader = decode(req)?;
        checks::topic(req, &h.topic)?;
        let value = match req.request_code() {
            RequestCode::GetMaxOffset => self.store.max_queue_offset(&h.topic, h.queue_id) as i64,
            RequestCode::GetMinOffset => self.store.min_queue_offset(&h.topic, h.queue_id) as i64,
            _ => {
                let min = self.store.min_queue_offset(&h.topic, h.queue_id);
                let got = self.store.get_messages(&h.topic, h.queue_id, min, 1, u32::MAX, &|_| true);
                return match got.messages.first().map(|raw| rmq_proto::message::decode_message(raw, false)) {
                    Some(Ok((m, _))) => Ok(ok(req).with_ext("timestamp", m.store_timestamp)),
                    _ => Err(reply(req, ResponseCode::SystemError, "queue is empty")),
                };
            }
        };
        Ok(ok(req).with_header(&OffsetResponseHeader { offset: value }))
    }

    fn view_message(&self, req: &RemotingCommand) -> RemotingCommand {
        let offset = req
            .ext("offset")
            .and_then(|o| o.parse::<i64>().ok())
            .or_else(|| req.ext("msgId").and_then(parse_offset_msg_id).map(|(_, o)| o));
        let Some(offset) = offset.filter(|o| *o >= 0) else {
            return reply(req, ResponseCode::InvalidParameter, "offset or msgId required");
        };
        match self.store.read_message(offset as u64) {
            Ok(m) => {
                let mut out = Vec::new();
                match rmq_proto::message::encode_message(&m, &mut out) {
                    Ok(()) => ok(req).with_body(out),
                    Err(e) => reply(req, ResponseCode::SystemError, e.to_string()),
                }
            }
            Err(e) => reply(req, ResponseCode::SystemError, format!("no message at offset {offset}: {e}")),
        }
    }

    /// QUERY_MESSAGE: messages by key or unique key from the index, every one read back and
    /// checked; none is QUERY_NOT_FOUND, as RocketMQ answers.
    fn query_message(&self, req: &RemotingCommand) -> Answer {
        let h: QueryMessageRequestHeader = decode(req)?;
        checks::topic(req, &h.topic)?;
        if h.key.is_empty() || h.max_num <= 0 {
            return Err(reply(req, ResponseCode::InvalidParameter, "a key and a maxNum above 0 are required"));
        }
        let unique = req.ext("_UNIQUE_KEY_QUERY") == Some("true");
        let max = (h.max_num as usize).min(QUERY_MAX_MESSAGES);
        let found = self
            .store
            .query_by_key(&h.topic, &h.key, max, h.begin_timestamp, h.end_timestamp, unique)
            .map_err(|e| reply(req, ResponseCode::SystemError, e.to_string()))?;
        if found.is_empty() {
            return Err(reply(req, ResponseCode::QueryNotFound, "can not find message, maybe time range not correct"));
        }
        let mut body = Vec::new();
        for m in &found {
            rmq_proto::message::encode_message(m, &mut body)
                .map_err(|e| reply(req, ResponseCode::SystemError, e.to_string()))?;
        }
        let last = self.store.index_end_phy_offset().unwrap_or(0) as i64;
        let last_time = found.iter().map(|m| m.store_timestamp).max().unwrap_or(0);
        let header =
            QueryMessageResponseHeader { index_last_update_timestamp: last_time, index_last_update_phyoffset: last };
        Ok(ok(req).with_header(&header).with_body(body))
    }

    fn consume_stats(&self, req: &RemotingCommand) -> Answer {
        let h: ConsumeStatsRequestHeader = decode(req)?;
        checks::consumer_group(req, &h.consumer_group)?;
        if let Some(t) = &h.topic {
            checks::topic(req, t)?;
        }
        let mut stats = ConsumeStats::default();
        for ((topic, group), per_queue) in self.offsets.iter() {
            if group != &h.consumer_group || h.topic.as_ref().is_some_and(|t| t != topic) {
                continue;
            }
            let queues = self.topics.get(topic).map_or(0, |t| t.write_queue_nums.max(t.read_queue_nums));
            for qid in 0..queues {
                stats.queues.push(QueueProgress {
                    queue: MessageQueue {
                        topic: topic.clone(),
                        broker_name: self.config.broker_name.clone(),
                        queue_id: qid,
                    },
                    broker_offset: self.store.max_queue_offset(topic, qid) as i64,
                    consumer_offset: per_queue.get(&qid).map_or(0, |o| *o as i64),
                });
            }
        }
        Ok(ok(req).with_body(to_json(&stats)))
    }

    fn connection_list(&self, req: &RemotingCommand) -> Answer {
        let h: ConsumerGroupRequestHeader = decode(req)?;
        checks::consumer_group(req, &h.consumer_group)?;
        let Some(members) = self.clients.consumers(&h.consumer_group) else {
            return Err(reply(
                req,
                ResponseCode::ConsumerNotOnline,
                format!("the consumer group[{}] not online", h.consumer_group),
            ));
        };
        let list: Vec<serde_json::Value> = members
            .iter()
            .map(|(id, c)| {
                serde_json::json!({
                    "clientId": id,
                    "clientAddr": self.peers.get(&c.conn).map(|p| p.to_string()).unwrap_or_default(),
                    "messageModel": c.data.message_model,
                    "consumeType": c.data.consume_type,
                })
            })
            .collect();
        Ok(ok(req).with_body(
            serde_json::to_vec(&serde_json::json!({ "connectionSet": list })).expect("json values serialize"),
        ))
    }

    fn runtime_info(&self, now_ms: u64, req: &RemotingCommand) -> RemotingCommand {
        let table: BTreeMap<&str, String> = self.runtime(now_ms).table();
        ok(req).with_body(serde_json::to_vec(&serde_json::json!({ "table": table })).expect("json values serialize"))
    }

    fn topic_stats(&self, req: &RemotingCommand) -> Answer {
        let h: TopicRequestHeader = decode(req)?;
        checks::topic(req, &h.topic)?;
        let Some(tc) = self.topics.get(&h.topic) else {
            return Err(reply(req, ResponseCode::TopicNotExist, format!("topic[{}] not exist", h.topic)));
        };
        let queues: Vec<serde_json::Value> = (0..tc.write_queue_nums.max(tc.read_queue_nums))
            .map(|q| {
                let max = self.store.max_queue_offset(&h.topic, q);
                let last = (max > 0)
                    .then(|| self.store.get_messages(&h.topic, q, max - 1, 1, u32::MAX, &|_| true))
                    .and_then(|got| got.messages.first().cloned())
                    .and_then(|raw| rmq_proto::message::decode_message(&raw, false).ok())
                    .map_or(0, |(m, _)| m.store_timestamp);
                serde_json::json!({
                    "queueId": q,
                    "minOffset": self.store.min_queue_offset(&h.topic, q),
                    "maxOffset": max,
                    "lastUpdateTimestamp": last,
                })
            })
            .collect();
        Ok(ok(req).with_body(
            serde_json::to_vec(&serde_json::json!({ "offsetTable": queues })).expect("json values serialize"),
        ))
    }
}

/// A response either way: `Err` carries a refusal, so handlers can use `?`.
type Answer = Result<RemotingCommand, RemotingCommand>;

/// Decodes a typed header; a bad one is INVALID_PARAMETER.
fn decode<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header().map_err(|e| reply(req, ResponseCode::InvalidParameter, e.to_string()))
}

/// Every group and topic a heartbeat declares.
fn check_heartbeat_names(req: &RemotingCommand, hb: &HeartbeatData) -> Result<(), RemotingCommand> {
    for cd in &hb.consumer_data_set {
        checks::consumer_group(req, &cd.group_name)?;
        for sub in &cd.subscription_data_set {
            checks::topic(req, &sub.topic)?;
        }
    }
    for pd in &hb.producer_data_set {
        checks::producer_group(req, &pd.group_name)?;
    }
    Ok(())
}

/// The group and every queue's topic of a LOCK_BATCH_MQ / UNLOCK_BATCH_MQ body.
fn check_lock_names(req: &RemotingCommand, body: &LockBatchBody) -> Result<(), RemotingCommand> {
    checks::consumer_group(req, &body.consumer_group)?;
    for mq in &body.mq_set {
        checks::topic(req, &mq.topic)?;
    }
    Ok(())
}

fn crc32(bytes: &[u8]) -> i32 {
    crc32fast::hash(bytes) as i32
}

/// What became of a consumer offset commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetCommit {
    /// The group's offset moved forward.
    Moved,
    /// It already stood there.
    Unchanged,
    /// Behind the committed offset: offsets only move forward.
    Backward {
        /// The offset kept.
        committed: u64,
    },
    /// Past the queue's end: a stale position.
    BeyondQueueEnd {
        /// The queue's max offset.
        max_offset: u64,
    },
    /// The offset table refused it (invalid name, table full).
    Refused,
}
