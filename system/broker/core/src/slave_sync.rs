//! Metadata a slave copies from its master (RocketMQ's SlaveSynchronize): every
//! [`SLAVE_SYNC_INTERVAL_MS`] a slave asks its master's remoting port for the topic table
//! (GET_ALL_TOPIC_CONFIG), the consumer offsets (GET_ALL_CONSUMER_OFFSET), the delay
//! progress (GET_ALL_DELAY_OFFSET) and the subscription groups
//! (GET_ALL_SUBSCRIPTIONGROUP_CONFIG), and takes them over, so consumers that fail over to it
//! resume where their group stood and a slave promoted by an operator delivers delayed
//! messages from the right place. The master's remoting address (and its HA address, when
//! `haMasterAddress` is not configured) comes from the NameServer's answer to the slave's
//! registration, as in RocketMQ.

use rmq_proto::body::{from_json, TopicConfigSerializeWrapper};
use rmq_proto::codes::RequestCode;
use rmq_proto::RemotingCommand;
use rmq_store::Directory;

use crate::{ok, BrokerCore, BrokerRole, Output};

/// How often a slave copies its master's metadata (RocketMQ: 10 s).
pub const SLAVE_SYNC_INTERVAL_MS: u64 = 10_000;

/// What a slave learned about its master and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct SlaveSync {
    /// The master's remoting address, from the registration answer.
    pub(crate) master_addr: Option<String>,
    /// The master's HA address, from the registration answer.
    pub(crate) master_ha_addr: Option<String>,
    /// Requests in flight: opaque → what was asked.
    pending: std::collections::BTreeMap<i32, RequestCode>,
    next_opaque: i32,
    pub(crate) next_ms: u64,
}

impl<D: Directory> BrokerCore<D> {
    /// Slave: asks the master for its metadata when due.
    pub(crate) fn slave_sync_timer(&mut self, now_ms: u64) {
        if self.config.broker_role != BrokerRole::Slave || now_ms < self.sync.next_ms {
            return;
        }
        self.sync.next_ms = now_ms + SLAVE_SYNC_INTERVAL_MS;
        let Some(addr) = self.sync.master_addr.clone() else { return };
        // Answers that never came are forgotten: the next round asks again.
        self.sync.pending.clear();
        for code in [
            RequestCode::GetAllTopicConfig,
            RequestCode::GetAllConsumerOffset,
            RequestCode::GetAllDelayOffset,
            RequestCode::GetAllSubscriptionGroupConfig,
        ] {
            // Positive opaques only: a driver hands registration answers over with a negative one.
            self.sync.next_opaque = self.sync.next_opaque % i32::MAX + 1;
            let opaque = self.sync.next_opaque;
            self.sync.pending.insert(opaque, code);
            let cmd = self.signed(RemotingCommand::request(code, opaque));
            self.outputs.push_back(Output::MasterRequest { addr: addr.clone(), cmd });
        }
    }

    /// The earliest slave-sync deadline.
    pub(crate) fn slave_sync_deadline_ms(&self) -> Option<u64> {
        (self.config.broker_role == BrokerRole::Slave).then_some(self.sync.next_ms)
    }

    /// An answer to a request this broker sent: a NameServer's answer to REGISTER_BROKER
    /// (a slave learns its master's addresses) or the master's answer to a metadata request.
    pub fn on_response(&mut self, now_ms: u64, resp: &RemotingCommand) {
        if let Some(code) = self.sync.pending.remove(&resp.opaque) {
            if resp.code == 0 {
                self.apply_master_metadata(now_ms, code, &resp.body);
            }
            return;
        }
        if self.config.broker_role == BrokerRole::Slave && resp.code == 0 {
            if let Some(m) = resp.ext("masterAddr").filter(|a| !a.is_empty()) {
                if self.sync.master_addr.as_deref() != Some(m) {
                    self.sync.master_addr = Some(m.to_string());
                    self.sync.next_ms = now_ms; // Copy at once from a new master.
                }
            }
            if let Some(h) = resp.ext("haServerAddr").filter(|a| !a.is_empty()) {
                self.sync.master_ha_addr = Some(h.to_string());
            }
        }
    }

    fn apply_master_metadata(&mut self, now_ms: u64, code: RequestCode, body: &[u8]) {
        match code {
            RequestCode::GetAllTopicConfig => {
                if let Ok(w) = from_json::<TopicConfigSerializeWrapper>(body) {
                    for tc in w.topic_config_table.into_values() {
                        let _ = self.topics.upsert(now_ms, tc);
                    }
                    self.topics_dirty = true;
                }
            }
            RequestCode::GetAllConsumerOffset if self.offsets.take_over(body).is_ok() => {
                let _ = self.offsets.persist(self.store.directory_mut());
            }
            RequestCode::GetAllDelayOffset if self.delay.take_over(body).is_ok() => {
                let _ = self.delay.persist(self.store.directory_mut());
            }
            RequestCode::GetAllSubscriptionGroupConfig if self.groups.take_over(body).is_ok() => {
                let _ = self.groups.persist(self.store.directory_mut());
            }
            _ => {}
        }
    }

    /// Master: GET_ALL_CONSUMER_OFFSET and GET_ALL_DELAY_OFFSET answers.
    pub(crate) fn metadata_answer(&self, req: &RemotingCommand) -> RemotingCommand {
        match req.request_code() {
            RequestCode::GetAllConsumerOffset => ok(req).with_body(self.offsets.to_body()),
            _ => ok(req).with_body(self.delay.to_body()),
        }
    }
}
