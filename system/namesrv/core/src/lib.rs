//! NameServer core: a stateless registry of brokers and topic routes.
//!
//! Pure state machine: every input carries `now_ms`; outputs are responses and typed events.
//! It never reads a clock, touches a socket or spawns anything.
//!
//! # Layout
//! - [`NamesrvCore`]: the state and its inputs (`handle`, `on_conn_closed`, `tick`).
//! - [`Event`]: past-tense facts for traces.
//!
//! # Calling contract
//! ```
//! use rmq_namesrv_core::{NamesrvCore, NamesrvConfig};
//! use rmq_proto::{ConnId, RemotingCommand, codes::RequestCode};
//! let mut ns = NamesrvCore::new(NamesrvConfig::default());
//! let req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 1).with_ext("topic", "T");
//! let resp = ns.handle(1_000, ConnId(1), &req).expect("requests get responses");
//! assert_eq!(resp.code, 17); // TOPIC_NOT_EXIST: nothing registered yet
//! ns.tick(1_000 + 5_000); // the driver calls tick at next_deadline_ms()
//! assert!(ns.next_deadline_ms() > 6_000);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rmq_acl::PlainAcl;

use rmq_proto::body::{
    from_json, to_json, BrokerData, ClusterInfo, QueueData, RegisterBrokerBody, TopicConfig, TopicList, TopicRouteData,
};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::{
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, TopicRequestHeader, UnregisterBrokerRequestHeader,
};
use rmq_proto::names::{self, NameError};
use rmq_proto::{ConnId, RemotingCommand, ResponseCode};

/// NameServer settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamesrvConfig {
    /// A broker silent this long is removed (RocketMQ: 120 s).
    pub broker_expiry_ms: u64,
    /// How often expiry is checked (RocketMQ: 5 s).
    pub scan_interval_ms: u64,
    /// Most brokers tracked; registrations beyond it are refused.
    pub brokers_max: usize,
    /// aclEnable + aclFile: every request is checked against this ACL first (see
    /// [`NamesrvCore::handle`]); `None`: no access control.
    pub acl: Option<Arc<PlainAcl>>,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig { broker_expiry_ms: 120_000, scan_interval_ms: 5_000, brokers_max: 4_096, acl: None }
    }
}

/// What the NameServer did, for traces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// A broker registered (first time or refreshed with changes).
    BrokerRegistered {
        /// Broker address.
        addr: String,
        /// Broker name.
        name: String,
        /// Broker id.
        id: i64,
        /// Topics it carries.
        topics: usize,
    },
    /// A broker was dropped for silence.
    BrokerExpired {
        /// Broker address.
        addr: String,
    },
    /// A broker unregistered or its connection closed.
    BrokerRemoved {
        /// Broker address.
        addr: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BrokerLive {
    last_update_ms: u64,
    conn: ConnId,
    ha_server_addr: String,
    broker_name: String,
    cluster: String,
    data_version: rmq_proto::body::DataVersion,
}

/// The NameServer's route tables.
/// The KV namespace of ordered topics' queue layouts (`mqadmin updateOrderConf`), returned in
/// their routes as `orderTopicConf`.
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamesrvCore {
    config: NamesrvConfig,
    /// topic → broker name → queues.
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker name → addresses.
    broker_addr_table: BTreeMap<String, BrokerData>,
    /// cluster → broker names.
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    /// broker address → liveness.
    broker_live_table: BTreeMap<String, BrokerLive>,
    /// namespace → key → value.
    kv_table: BTreeMap<String, BTreeMap<String, String>>,
    /// Connection → peer IP, for the ACL's white addresses (one entry per open connection, so
    /// bounded by the driver's connection cap).
    peers: BTreeMap<ConnId, IpAddr>,
    next_scan_ms: u64,
    events: Vec<Event>,
}

impl NamesrvCore {
    /// An empty registry.
    pub fn new(config: NamesrvConfig) -> Self {
        NamesrvCore {
            next_scan_ms: config.scan_interval_ms,
            config,
            topic_queue_table: BTreeMap::new(),
            broker_addr_table: BTreeMap::new(),
            cluster_addr_table: BTreeMap::new(),
            broker_live_table: BTreeMap::new(),
            kv_table: BTreeMap::new(),
            peers: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// A connection opened from `peer` (needed only for the ACL's white addresses: a
    /// connection never reported here matches none).
    pub fn on_conn_opened(&mut self, _now_ms: u64, conn: ConnId, peer: SocketAddr) {
        self.peers.insert(conn, peer.ip());
    }

    /// Handles one request; returns the response (`None` for one-way requests).
    ///
    /// With an ACL configured, the request is checked first ([`rmq_acl::check`]): writes
    /// (REGISTER_BROKER, UNREGISTER_BROKER, topic and KV changes, broker heartbeats) need an
    /// admin account or a global white address, reads (routes, cluster info, topic lists, KV
    /// reads) any signed account. A refused request is answered NO_PERMISSION and changes
    /// nothing.
    pub fn handle(&mut self, now_ms: u64, conn: ConnId, req: &RemotingCommand) -> Option<RemotingCommand> {
        if let Some(acl) = &self.config.acl {
            if let Err(denied) = acl.check(self.peers.get(&conn).copied(), req) {
                let resp =
                    RemotingCommand::response_to(req, ResponseCode::NoPermission).with_remark(denied.to_string());
                return (!req.is_oneway()).then_some(resp);
            }
        }
        let resp = match req.request_code() {
            RequestCode::RegisterBroker => self.register_broker(now_ms, conn, req),
            RequestCode::UnregisterBroker => self.unregister_broker(req),
            RequestCode::GetRouteinfoByTopic => self.route(req),
            RequestCode::GetBrokerClusterInfo => self.cluster_info(req),
            RequestCode::GetAllTopicListFromNameserver => self.topic_list(req, None),
            RequestCode::GetTopicsByCluster => {
                let cluster = req.ext("cluster").unwrap_or_default().to_string();
                self.topic_list(req, Some(&cluster))
            }
            RequestCode::RegisterTopicInNamesrv => self.register_topic(req),
            RequestCode::DeleteTopicInNamesrv => self.delete_topic(req),
            RequestCode::BrokerHeartbeat => self.broker_heartbeat(now_ms, req),
            RequestCode::QueryDataVersion => self.query_data_version(now_ms, req),
            RequestCode::PutKvConfig | RequestCode::GetKvConfig | RequestCode::DeleteKvConfig => self.kv(req),
            _ => RemotingCommand::response_to(req, ResponseCode::RequestCodeNotSupported)
                .with_remark(format!("request code {} not supported", req.code)),
        };
        self.check_invariants();
        (!req.is_oneway()).then_some(resp)
    }

    /// A connection closed: brokers registered over it are removed at once.
    pub fn on_conn_closed(&mut self, _now_ms: u64, conn: ConnId) {
        self.peers.remove(&conn);
        let gone: Vec<String> =
            self.broker_live_table.iter().filter(|(_, l)| l.conn == conn).map(|(a, _)| a.clone()).collect();
        for addr in gone {
            self.remove_broker_addr(&addr);
            self.events.push(Event::BrokerRemoved { addr });
        }
    }

    /// Expires silent brokers. Call at [`Self::next_deadline_ms`].
    pub fn tick(&mut self, now_ms: u64) {
        if now_ms < self.next_scan_ms {
            return;
        }
        self.next_scan_ms = now_ms + self.config.scan_interval_ms;
        let expired: Vec<String> = self
            .broker_live_table
            .iter()
            .filter(|(_, l)| now_ms.saturating_sub(l.last_update_ms) > self.config.broker_expiry_ms)
            .map(|(a, _)| a.clone())
            .collect();
        for addr in expired {
            self.remove_broker_addr(&addr);
            self.events.push(Event::BrokerExpired { addr });
        }
        self.check_invariants();
    }

    /// [`Self::assert_invariants`] in debug builds. The check walks every table (O(topics)),
    /// which after every request made a NameServer with 10,000 topics spend most of its CPU
    /// on it; release binaries skip it and the simulator calls it after every step itself.
    fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
    }

    /// When [`Self::tick`] wants to run next.
    pub fn next_deadline_ms(&self) -> u64 {
        self.next_scan_ms
    }

    /// Takes the events produced since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Topics with a route.
    pub fn topic_count(&self) -> usize {
        self.topic_queue_table.len()
    }

    /// Clusters.
    pub fn cluster_count(&self) -> usize {
        self.cluster_addr_table.len()
    }

    /// Live broker addresses, sorted.
    pub fn live_brokers(&self) -> Vec<String> {
        self.broker_live_table.keys().cloned().collect()
    }

    /// Checks the tables agree with each other.
    pub fn assert_invariants(&self) {
        for (addr, live) in &self.broker_live_table {
            let data = self.broker_addr_table.get(&live.broker_name);
            assert!(
                data.is_some_and(|d| d.broker_addrs.values().any(|a| a == addr)),
                "live broker {addr} missing from the address table"
            );
            assert!(
                self.cluster_addr_table.get(&live.cluster).is_some_and(|names| names.contains(&live.broker_name)),
                "live broker {addr} missing from its cluster"
            );
        }
        for (name, data) in &self.broker_addr_table {
            assert!(!data.broker_addrs.is_empty(), "broker name {name} without addresses is removed");
            for addr in data.broker_addrs.values() {
                assert!(
                    self.broker_live_table.get(addr).is_some_and(|l| &l.broker_name == name),
                    "address {addr} of {name} has no live entry"
                );
            }
        }
        for (topic, per_broker) in &self.topic_queue_table {
            assert!(names::validate_topic(topic).is_ok(), "route for an invalid topic name {topic:?}");
            assert!(!per_broker.is_empty(), "empty topic entries are removed");
            for name in per_broker.keys() {
                assert!(self.broker_addr_table.contains_key(name), "queue data for unknown broker {name}");
            }
        }
    }

    fn register_broker(&mut self, now_ms: u64, conn: ConnId, req: &RemotingCommand) -> RemotingCommand {
        let h: RegisterBrokerRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return invalid(req, &e.to_string()),
        };
        if h.compressed == Some(true) {
            return invalid(req, "compressed broker registration is not supported; set compressedRegister=false");
        }
        if let Some(crc) = h.body_crc32.filter(|c| *c != 0) {
            let actual = crc32fast::hash(&req.body) as i32;
            if actual != crc {
                return invalid(req, &format!("body CRC {actual} does not match bodyCrc32 {crc}"));
            }
        }
        let body: RegisterBrokerBody = if req.body.is_empty() {
            RegisterBrokerBody::default()
        } else {
            match from_json(&req.body) {
                Ok(b) => b,
                Err(e) => return invalid(req, &format!("bad registration body: {e}")),
            }
        };
        let displaced = self.displaced_addr(&h);
        if !self.broker_live_table.contains_key(&h.broker_addr)
            && displaced.is_none()
            && self.broker_live_table.len() >= self.config.brokers_max
        {
            return RemotingCommand::response_to(req, ResponseCode::SystemBusy)
                .with_remark("too many brokers registered");
        }
        // The newer registration takes over the broker id (RocketMQ RouteInfoManager.registerBroker):
        // the address that held it leaves every table, so no live entry points at a slot it
        // no longer owns.
        if let Some(old) = displaced {
            self.remove_broker_addr(&old);
            self.events.push(Event::BrokerRemoved { addr: old });
        }
        // An address that re-registers under another broker or cluster name leaves its old one.
        if self
            .broker_live_table
            .get(&h.broker_addr)
            .is_some_and(|l| l.broker_name != h.broker_name || l.cluster != h.cluster_name)
        {
            self.remove_broker_addr(&h.broker_addr);
        }
        self.cluster_addr_table.entry(h.cluster_name.clone()).or_default().insert(h.broker_name.clone());
        let data = self.broker_addr_table.entry(h.broker_name.clone()).or_insert_with(|| BrokerData {
            cluster: h.cluster_name.clone(),
            broker_name: h.broker_name.clone(),
            broker_addrs: BTreeMap::new(),
            zone_name: None,
            enable_acting_master: false,
        });
        // One address holds one id: a slave promoted to a new id replaces its old entry.
        data.broker_addrs.retain(|id, a| !(a == &h.broker_addr && *id != h.broker_id));
        data.broker_addrs.insert(h.broker_id, h.broker_addr.clone());
        let wrapper = &body.topic_config_serialize_wrapper;
        let changed = self
            .broker_live_table
            .get(&h.broker_addr)
            .is_none_or(|l| l.data_version != wrapper.data_version || l.conn != conn);
        if h.broker_id == 0 {
            self.update_queue_data(&h.broker_name, &wrapper.topic_config_table);
        }
        self.broker_live_table.insert(
            h.broker_addr.clone(),
            BrokerLive {
                last_update_ms: now_ms,
                conn,
                ha_server_addr: h.ha_server_addr.clone(),
                broker_name: h.broker_name.clone(),
                cluster: h.cluster_name.clone(),
                data_version: wrapper.data_version.clone(),
            },
        );
        if changed {
            self.events.push(Event::BrokerRegistered {
                addr: h.broker_addr.clone(),
                name: h.broker_name.clone(),
                id: h.broker_id,
                topics: wrapper.topic_config_table.len(),
            });
        }
        let mut resp_header = RegisterBrokerResponseHeader::default();
        if h.broker_id != 0 {
            let master = self.broker_addr_table.get(&h.broker_name).and_then(|d| d.master_addr().map(String::from));
            if let Some(m) = master {
                resp_header.ha_server_addr = self.broker_live_table.get(&m).map(|l| l.ha_server_addr.clone());
                resp_header.master_addr = Some(m);
            }
        }
        RemotingCommand::response_to(req, ResponseCode::Success).with_header(&resp_header)
    }

    /// The other address that currently holds this registration's broker name + id, if any.
    fn displaced_addr(&self, h: &RegisterBrokerRequestHeader) -> Option<String> {
        let data = self.broker_addr_table.get(&h.broker_name)?;
        data.broker_addrs.get(&h.broker_id).filter(|a| **a != h.broker_addr).cloned()
    }

    /// Replaces the master's queue data: topics it no longer has lose this broker.
    fn update_queue_data(&mut self, broker_name: &str, topics: &BTreeMap<String, TopicConfig>) {
        for (topic, per_broker) in self.topic_queue_table.iter_mut() {
            if !topics.contains_key(topic) {
                per_broker.remove(broker_name);
            }
        }
        self.topic_queue_table.retain(|_, per_broker| !per_broker.is_empty());
        // A topic whose name breaks RocketMQ's rules never enters the routes, whoever
        // registers it (our brokers refuse such names; a foreign or older one might not).
        for (name, tc) in topics.iter().filter(|(name, _)| names::validate_topic(name).is_ok()) {
            self.topic_queue_table
                .entry(name.clone())
                .or_default()
                .insert(broker_name.to_string(), queue_data(broker_name, tc));
        }
    }

    fn unregister_broker(&mut self, req: &RemotingCommand) -> RemotingCommand {
        let h: UnregisterBrokerRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return invalid(req, &e.to_string()),
        };
        if self.broker_live_table.contains_key(&h.broker_addr) {
            self.remove_broker_addr(&h.broker_addr);
            self.events.push(Event::BrokerRemoved { addr: h.broker_addr });
        }
        RemotingCommand::response_to(req, ResponseCode::Success)
    }

    fn remove_broker_addr(&mut self, addr: &str) {
        let Some(live) = self.broker_live_table.remove(addr) else { return };
        let name = live.broker_name;
        let mut name_gone = false;
        if let Some(data) = self.broker_addr_table.get_mut(&name) {
            data.broker_addrs.retain(|_, a| a != addr);
            name_gone = data.broker_addrs.is_empty();
        }
        if name_gone {
            self.broker_addr_table.remove(&name);
            if let Some(names) = self.cluster_addr_table.get_mut(&live.cluster) {
                names.remove(&name);
                if names.is_empty() {
                    self.cluster_addr_table.remove(&live.cluster);
                }
            }
            for per_broker in self.topic_queue_table.values_mut() {
                per_broker.remove(&name);
            }
            self.topic_queue_table.retain(|_, p| !p.is_empty());
        }
    }

    fn route(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: TopicRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return invalid(req, &e.to_string()),
        };
        if let Err(e) = names::validate_topic(&h.topic) {
            return bad_name(req, &e);
        }
        let Some(per_broker) = self.topic_queue_table.get(&h.topic) else {
            return RemotingCommand::response_to(req, ResponseCode::TopicNotExist)
                .with_remark(format!("No topic route info in name server for the topic: {}", h.topic));
        };
        let route = TopicRouteData {
            // updateOrderConf (PUT_KV_CONFIG in ORDER_TOPIC_CONFIG): "brokerName:queues;...".
            order_topic_conf: self.kv_table.get(ORDER_TOPIC_CONFIG).and_then(|m| m.get(&h.topic)).cloned(),
            queue_datas: per_broker.values().cloned().collect(),
            broker_datas: per_broker.keys().filter_map(|n| self.broker_addr_table.get(n).cloned()).collect(),
            filter_server_table: BTreeMap::new(),
        };
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(to_json(&route))
    }

    fn cluster_info(&self, req: &RemotingCommand) -> RemotingCommand {
        let info = ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self
                .cluster_addr_table
                .iter()
                .map(|(c, names)| (c.clone(), names.iter().cloned().collect()))
                .collect(),
        };
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(to_json(&info))
    }

    fn topic_list(&self, req: &RemotingCommand, cluster: Option<&str>) -> RemotingCommand {
        let in_cluster = |per_broker: &BTreeMap<String, QueueData>| match cluster {
            None => true,
            Some(c) => {
                let names = self.cluster_addr_table.get(c);
                per_broker.keys().any(|n| names.is_some_and(|s| s.contains(n)))
            }
        };
        let list = TopicList {
            topic_list: self.topic_queue_table.iter().filter(|(_, p)| in_cluster(p)).map(|(t, _)| t.clone()).collect(),
        };
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(to_json(&list))
    }

    fn register_topic(&mut self, req: &RemotingCommand) -> RemotingCommand {
        let h: TopicRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return invalid(req, &e.to_string()),
        };
        if let Err(e) = names::validate_topic(&h.topic) {
            return bad_name(req, &e);
        }
        let route: TopicRouteData = match from_json(&req.body) {
            Ok(r) => r,
            Err(e) => return invalid(req, &format!("bad route body: {e}")),
        };
        for qd in route.queue_datas {
            if self.broker_addr_table.contains_key(&qd.broker_name) {
                self.topic_queue_table.entry(h.topic.clone()).or_default().insert(qd.broker_name.clone(), qd);
            }
        }
        RemotingCommand::response_to(req, ResponseCode::Success)
    }

    fn delete_topic(&mut self, req: &RemotingCommand) -> RemotingCommand {
        let h: TopicRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return invalid(req, &e.to_string()),
        };
        if let Err(e) = names::validate_topic(&h.topic) {
            return bad_name(req, &e);
        }
        self.topic_queue_table.remove(&h.topic);
        RemotingCommand::response_to(req, ResponseCode::Success)
    }

    fn broker_heartbeat(&mut self, now_ms: u64, req: &RemotingCommand) -> RemotingCommand {
        if let Some(live) = req.ext("brokerAddr").and_then(|a| self.broker_live_table.get_mut(a)) {
            live.last_update_ms = now_ms;
        }
        RemotingCommand::response_to(req, ResponseCode::Success)
    }

    fn query_data_version(&mut self, now_ms: u64, req: &RemotingCommand) -> RemotingCommand {
        let addr = req.ext("brokerAddr").unwrap_or_default();
        let changed = match self.broker_live_table.get_mut(addr) {
            Some(live) => {
                live.last_update_ms = now_ms;
                from_json::<rmq_proto::body::DataVersion>(&req.body).map_or(true, |v| v != live.data_version)
            }
            None => true,
        };
        RemotingCommand::response_to(req, ResponseCode::Success).with_ext("changed", changed)
    }

    fn kv(&mut self, req: &RemotingCommand) -> RemotingCommand {
        let (Some(ns), Some(key)) = (req.ext("namespace"), req.ext("key")) else {
            return invalid(req, "namespace and key are required");
        };
        match req.request_code() {
            RequestCode::PutKvConfig => {
                let value = req.ext("value").unwrap_or_default().to_string();
                self.kv_table.entry(ns.to_string()).or_default().insert(key.to_string(), value);
                RemotingCommand::response_to(req, ResponseCode::Success)
            }
            RequestCode::GetKvConfig => match self.kv_table.get(ns).and_then(|m| m.get(key)) {
                Some(v) => RemotingCommand::response_to(req, ResponseCode::Success).with_ext("value", v),
                None => RemotingCommand::response_to(req, ResponseCode::QueryNotFound)
                    .with_remark(format!("No config item, Namespace: {ns} Key: {key}")),
            },
            _ => {
                if let Some(m) = self.kv_table.get_mut(ns) {
                    m.remove(key);
                }
                RemotingCommand::response_to(req, ResponseCode::Success)
            }
        }
    }
}

fn queue_data(broker_name: &str, tc: &TopicConfig) -> QueueData {
    QueueData {
        broker_name: broker_name.to_string(),
        read_queue_nums: tc.read_queue_nums,
        write_queue_nums: tc.write_queue_nums,
        perm: tc.perm,
        topic_sys_flag: tc.topic_sys_flag,
    }
}

/// A topic name TopicValidator refuses: SYSTEM_ERROR with its remark, as RocketMQ's broker
/// answers (the NameServer itself does not check; we refuse so a bad name never routes).
fn bad_name(req: &RemotingCommand, e: &NameError) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::SystemError).with_remark(e.to_string())
}

fn invalid(req: &RemotingCommand, why: &str) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::InvalidParameter).with_remark(why)
}

#[cfg(test)]
mod tests;
