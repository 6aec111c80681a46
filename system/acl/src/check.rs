//! The access check: who is asking (white address or signed account), and whether that
//! account may do what the request asks (RocketMQ's `PlainAccessValidator`).
//!
//! # What each request needs
//!
//! | request (code) | needs |
//! |---|---|
//! | SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) | PUB on the topic; a send to `%RETRY%G` needs SUB on group G instead |
//! | PULL_MESSAGE (11) | SUB on the topic and SUB on the consumer group |
//! | QUERY_MESSAGE (12) | SUB on the topic |
//! | QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15) | SUB on the consumer group and SUB on the topic |
//! | HEART_BEAT (34) | for each consumer in the body: SUB on its group and on every subscribed topic |
//! | UNREGISTER_CLIENT (35) | SUB on the consumer group, if one is named |
//! | CONSUMER_SEND_MSG_BACK (36) | SUB on the group |
//! | GET_CONSUMER_LIST_BY_GROUP (38) | SUB on the consumer group |
//! | UPDATE_AND_CREATE_TOPIC (17), UPDATE_BROKER_CONFIG (25), UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200), DELETE_SUBSCRIPTIONGROUP (207), DELETE_TOPIC_IN_BROKER (215), INVOKE_BROKER_TO_RESET_OFFSET (222) | an admin account |
//! | NameServer writes: PUT_KV_CONFIG (100), DELETE_KV_CONFIG (102), REGISTER_BROKER (103), UNREGISTER_BROKER (104), DELETE_TOPIC_IN_NAMESRV (216), REGISTER_TOPIC_IN_NAMESRV (217), QUERY_DATA_VERSION (322), BROKER_HEARTBEAT (904) | an admin account |
//! | anything else (routes, offsets queries, stats, ...) | a valid signature from any account |
//!
//! A resource listed in the account's `topicPerms`/`groupPerms` uses that permission; any other
//! uses `defaultTopicPerm`/`defaultGroupPerm`. An admin account with no `topicPerms` and no
//! `groupPerms` may use every topic and group. Differences from RocketMQ 4.x, all stricter:
//! SEND_BATCH_MESSAGE and QUERY_CONSUMER_OFFSET are checked (RocketMQ lets them through with a
//! signature alone), the retry group of a `%RETRY%` send is read from the topic itself, the
//! NameServer writes need an admin, and an account's `whiteRemoteAddress` waives the
//! signature but not the permissions (RocketMQ waives both).

use std::net::IpAddr;

use rmq_proto::body::{from_json, HeartbeatData};
use rmq_proto::header::{
    ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader,
    PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, SendMessageRequestHeader, TopicRequestHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rmq_proto::names::RETRY_PREFIX;
use rmq_proto::{CommandHeader, RemotingCommand};

use crate::file::{Account, PlainAcl};
use crate::perm::Perm;
use crate::sign::{self, ACCESS_KEY, SIGNATURE};

/// Request codes that need an admin account (RocketMQ's `Permission.ADMIN_CODE`, plus the
/// NameServer's writes).
pub const ADMIN_CODES: &[i32] = &[
    17,  // UPDATE_AND_CREATE_TOPIC
    25,  // UPDATE_BROKER_CONFIG
    200, // UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
    207, // DELETE_SUBSCRIPTIONGROUP
    215, // DELETE_TOPIC_IN_BROKER
    222, // INVOKE_BROKER_TO_RESET_OFFSET (not in RocketMQ's list: rewinding a group is an operator's act)
    100, // PUT_KV_CONFIG
    102, // DELETE_KV_CONFIG
    103, // REGISTER_BROKER
    104, // UNREGISTER_BROKER
    216, // DELETE_TOPIC_IN_NAMESRV
    217, // REGISTER_TOPIC_IN_NAMESRV
    322, // QUERY_DATA_VERSION
    904, // BROKER_HEARTBEAT
];

/// Why a request passed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Allowed {
    /// The peer matches `globalWhiteRemoteAddresses`.
    GlobalWhiteAddress,
    /// The request named this account and was signed by it (or came from its
    /// `whiteRemoteAddress`), and the account may do what it asks.
    Account(String),
}

/// Why a request was refused; the text is the NO_PERMISSION remark.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Denied {
    /// No `AccessKey` ext field and the peer is not globally white-listed.
    #[error("no AccessKey in the request, and the peer {peer} is not a white remote address")]
    NoAccessKey {
        /// The peer's address (`unknown` when the connection's address is not known).
        peer: String,
    },
    /// The access key names no account.
    #[error("no account has accessKey={access_key}")]
    UnknownAccount {
        /// The access key sent.
        access_key: String,
    },
    /// No signature, or a signature that does not match the request.
    #[error("signature check failed for accessKey={access_key}")]
    BadSignature {
        /// The account.
        access_key: String,
    },
    /// An admin request from an account without `admin: true`.
    #[error("request code {code} needs an admin account, and accessKey={access_key} is not one")]
    NotAdmin {
        /// Request code.
        code: i32,
        /// The account.
        access_key: String,
    },
    /// The account lacks a permission on a topic or group.
    #[error("accessKey={access_key} has no {needed} permission on {kind} {name}")]
    NoResourcePerm {
        /// The account.
        access_key: String,
        /// "topic" or "group".
        kind: &'static str,
        /// The topic or group.
        name: String,
        /// PUB or SUB.
        needed: Perm,
    },
    /// The request's header or body does not say which topic or group it is about.
    #[error("cannot tell which topic or group request code {code} is about: {reason}")]
    Unreadable {
        /// Request code.
        code: i32,
        /// What failed to decode.
        reason: String,
    },
}

/// What a request needs: admin, and permissions on topics and groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    /// Only admin accounts may send it.
    pub admin: bool,
    /// (topic, permission) pairs.
    pub topics: Vec<(String, Perm)>,
    /// (group, permission) pairs.
    pub groups: Vec<(String, Perm)>,
}

impl Needs {
    fn topic(&mut self, name: String, perm: Perm) {
        match name.strip_prefix(RETRY_PREFIX) {
            // A retry topic belongs to its consumer group (RocketMQ keys groups by it).
            Some(group) => self.groups.push((group.to_string(), perm)),
            None => self.topics.push((name, perm)),
        }
    }
}

/// What `req` needs (the table in the module docs).
pub fn needs(req: &RemotingCommand) -> Result<Needs, Denied> {
    let mut n = Needs { admin: ADMIN_CODES.contains(&req.code), ..Needs::default() };
    let unreadable = |reason: String| Denied::Unreadable { code: req.code, reason };
    match req.code {
        10 | 310 | 320 => {
            let h: SendMessageRequestHeader = header(req)?;
            // A send to %RETRY%G is a consumer's retry: SUB on G (the topic maps to its group).
            let perm = if h.topic.starts_with(RETRY_PREFIX) { Perm::SUB } else { Perm::PUB };
            n.topic(h.topic, perm);
        }
        11 => {
            let h: PullMessageRequestHeader = header(req)?;
            n.topic(h.topic, Perm::SUB);
            n.groups.push((h.consumer_group, Perm::SUB));
        }
        12 => n.topic(header::<TopicRequestHeader>(req)?.topic, Perm::SUB),
        14 => {
            let h: QueryConsumerOffsetRequestHeader = header(req)?;
            n.topic(h.topic, Perm::SUB);
            n.groups.push((h.consumer_group, Perm::SUB));
        }
        15 => {
            let h: UpdateConsumerOffsetRequestHeader = header(req)?;
            n.topic(h.topic, Perm::SUB);
            n.groups.push((h.consumer_group, Perm::SUB));
        }
        34 => {
            let hb: HeartbeatData = from_json(&req.body).map_err(|e| unreadable(format!("heartbeat body: {e}")))?;
            for c in hb.consumer_data_set {
                for s in c.subscription_data_set {
                    n.topic(s.topic, Perm::SUB);
                }
                n.groups.push((c.group_name, Perm::SUB));
            }
        }
        35 => {
            let h: UnregisterClientRequestHeader = header(req)?;
            n.groups.extend(h.consumer_group.map(|g| (g, Perm::SUB)));
        }
        36 => {
            let h: ConsumerSendMsgBackRequestHeader = header(req)?;
            n.groups.push((h.group, Perm::SUB));
        }
        37 => {
            // END_TRANSACTION publishes (commit) to the topic it names.
            let h: EndTransactionRequestHeader = header(req)?;
            n.topics.extend(h.topic.map(|t| (t, Perm::PUB)));
        }
        38 => n.groups.push((header::<ConsumerGroupRequestHeader>(req)?.consumer_group, Perm::SUB)),
        _ => {}
    }
    Ok(n)
}

/// The request's typed header, or why it does not decode.
fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, Denied> {
    H::from_ext(&req.ext_fields).map_err(|e| Denied::Unreadable { code: req.code, reason: e.to_string() })
}

impl PlainAcl {
    /// Decides whether `req`, from `peer`, may be carried out. `peer` is `None` when the
    /// connection's address is unknown (it then matches no white address).
    pub fn check(&self, peer: Option<IpAddr>, req: &RemotingCommand) -> Result<Allowed, Denied> {
        if let Some(ip) = peer {
            if self.global_white.iter().any(|p| p.matches(ip)) {
                return Ok(Allowed::GlobalWhiteAddress);
            }
        }
        let Some(access_key) = req.ext(ACCESS_KEY) else {
            return Err(Denied::NoAccessKey { peer: peer.map_or("unknown".into(), |ip| ip.to_string()) });
        };
        let Some(account) = self.accounts.get(access_key) else {
            return Err(Denied::UnknownAccount { access_key: access_key.into() });
        };
        let white = matches!((&account.white, peer), (Some(p), Some(ip)) if p.matches(ip));
        if !white {
            let signed = req
                .ext(SIGNATURE)
                .is_some_and(|claimed| sign::verify(&account.secret_key, &sign::signed_content(req), claimed));
            if !signed {
                return Err(Denied::BadSignature { access_key: access_key.into() });
            }
        }
        account.authorize(req)?;
        Ok(Allowed::Account(account.access_key.clone()))
    }
}

impl Account {
    /// Whether this account may do what `req` asks (its identity already established).
    pub fn authorize(&self, req: &RemotingCommand) -> Result<(), Denied> {
        let needs = needs(req)?;
        if needs.admin && !self.admin {
            return Err(Denied::NotAdmin { code: req.code, access_key: self.access_key.clone() });
        }
        if self.admin && self.topics.is_empty() && self.groups.is_empty() {
            return Ok(());
        }
        let resources =
            needs.topics.iter().map(|(name, p)| ("topic", name, *p, self.topics.get(name), self.default_topic));
        let groups =
            needs.groups.iter().map(|(name, p)| ("group", name, *p, self.groups.get(name), self.default_group));
        for (kind, name, needed, listed, default) in resources.chain(groups) {
            if !listed.copied().unwrap_or(default).grants(needed) {
                let (access_key, name) = (self.access_key.clone(), name.clone());
                return Err(Denied::NoResourcePerm { access_key, kind, name, needed });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::Credentials;
    use proptest::prelude::*;
    use rmq_proto::body::{to_json, ConsumerData, SubscriptionData};
    use rmq_proto::codes::RequestCode;

    const ACL: &str = "
globalWhiteRemoteAddresses: ['10.10.*']
accounts:
  - accessKey: producer1
    secretKey: producer-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [Orders=PUB, Audit=PUB|SUB, Secret=DENY]
    groupPerms: [Blocked=DENY]
  - accessKey: consumer1
    secretKey: consumer-secret
    whiteRemoteAddress: 192.168.1.{7,8}
    defaultTopicPerm: SUB
    defaultGroupPerm: SUB
  - accessKey: admin001
    secretKey: admin-secret
    admin: true
";

    fn acl() -> PlainAcl {
        PlainAcl::parse(ACL).unwrap()
    }

    fn local() -> Option<IpAddr> {
        Some("127.0.0.1".parse().unwrap())
    }

    fn send(topic: &str) -> RemotingCommand {
        let h = SendMessageRequestHeader { producer_group: "pg".into(), topic: topic.into(), ..Default::default() };
        RemotingCommand { ext_fields: h.to_ext_v2(), ..RemotingCommand::request(RequestCode::SendMessageV2, 1) }
            .with_body(&b"payload"[..])
    }

    fn signed(ak: &str, sk: &str, req: RemotingCommand) -> RemotingCommand {
        Credentials::new(ak, sk).signed(req)
    }

    #[test]
    fn identity_white_list_and_signature() {
        let acl = acl();
        assert!(matches!(acl.check(local(), &send("Orders")), Err(Denied::NoAccessKey { .. })));
        assert_eq!(acl.check(Some("10.10.3.4".parse().unwrap()), &send("Secret")), Ok(Allowed::GlobalWhiteAddress));
        let ok = signed("producer1", "producer-secret", send("Orders"));
        assert_eq!(acl.check(local(), &ok), Ok(Allowed::Account("producer1".into())));
        let wrong = signed("producer1", "not-the-secret", send("Orders"));
        assert!(matches!(acl.check(local(), &wrong), Err(Denied::BadSignature { .. })));
        let mut tampered = ok.clone();
        tampered.body = bytes::Bytes::from_static(b"other payload");
        assert!(matches!(acl.check(local(), &tampered), Err(Denied::BadSignature { .. })));
        let mut unsigned = send("Orders");
        unsigned.ext_fields.insert(ACCESS_KEY.into(), "producer1".into());
        assert!(matches!(acl.check(local(), &unsigned), Err(Denied::BadSignature { .. })));
        let stranger = signed("nobody00", "whatever", send("Orders"));
        assert!(matches!(acl.check(local(), &stranger), Err(Denied::UnknownAccount { .. })));
    }

    #[test]
    fn end_transaction_needs_pub_on_its_topic() {
        let acl = acl();
        let end = |topic: &str| {
            let h = EndTransactionRequestHeader {
                topic: Some(topic.into()),
                producer_group: "pg".into(),
                commit_or_rollback: 8,
                msg_id: "x".into(),
                ..Default::default()
            };
            RemotingCommand::request_with(RequestCode::EndTransaction, 1, &h)
        };
        let ok = signed("producer1", "producer-secret", end("Orders"));
        assert_eq!(acl.check(local(), &ok), Ok(Allowed::Account("producer1".into())));
        let denied = signed("producer1", "producer-secret", end("Secret"));
        assert!(matches!(acl.check(local(), &denied), Err(Denied::NoResourcePerm { kind: "topic", .. })));
    }

    #[test]
    fn account_white_address_waives_the_signature_not_the_permissions() {
        let acl = acl();
        let from = Some("192.168.1.8".parse().unwrap());
        let mut unsigned = send("Anything");
        unsigned.ext_fields.insert(ACCESS_KEY.into(), "consumer1".into());
        // consumer1 has SUB only on topics: a send needs PUB.
        assert!(matches!(acl.check(from, &unsigned), Err(Denied::NoResourcePerm { kind: "topic", .. })));
        let pull = pull("Anything", "g1").with_ext(ACCESS_KEY, "consumer1");
        assert_eq!(acl.check(from, &pull), Ok(Allowed::Account("consumer1".into())));
        assert!(matches!(acl.check(Some("192.168.1.9".parse().unwrap()), &pull), Err(Denied::BadSignature { .. })));
    }

    fn pull(topic: &str, group: &str) -> RemotingCommand {
        let h = PullMessageRequestHeader { consumer_group: group.into(), topic: topic.into(), ..Default::default() };
        RemotingCommand::request_with(RequestCode::PullMessage, 1, &h)
    }

    #[test]
    fn permissions_follow_the_table() {
        let acl = acl();
        let p = |req| acl.check(local(), &signed("producer1", "producer-secret", req));
        assert!(p(send("Orders")).is_ok());
        assert!(p(send("Audit")).is_ok());
        assert!(matches!(p(send("Secret")), Err(Denied::NoResourcePerm { ref name, .. }) if name == "Secret"));
        assert!(p(send("Unlisted")).is_err(), "defaultTopicPerm DENY");
        assert!(p(pull("Orders", "g")).is_err(), "PUB does not grant SUB");
        assert!(p(pull("Audit", "g")).is_ok());
        assert!(p(pull("Audit", "Blocked")).is_err(), "group DENY");
        // A send to a retry topic needs SUB on the group, not PUB on a topic.
        assert!(p(send("%RETRY%g")).is_ok());
        assert!(p(send("%RETRY%Blocked")).is_err());
        let create = RemotingCommand::request(RequestCode::UpdateAndCreateTopic, 1).with_ext("topic", "Orders");
        assert!(matches!(p(create.clone()), Err(Denied::NotAdmin { code: 17, .. })));
        assert!(acl.check(local(), &signed("admin001", "admin-secret", create)).is_ok());
        assert!(acl.check(local(), &signed("admin001", "admin-secret", send("Secret"))).is_ok(), "admin with no perms");
        let reg = RemotingCommand::request(RequestCode::RegisterBroker, 1);
        assert!(matches!(p(reg), Err(Denied::NotAdmin { code: 103, .. })));
        let route = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 1).with_ext("topic", "Secret");
        assert!(p(route).is_ok(), "route queries need an identity only");
    }

    #[test]
    fn heartbeats_need_their_groups_and_topics() {
        let acl = acl();
        let hb = |group: &str, topic: &str| {
            let data = HeartbeatData {
                client_id: "c".into(),
                consumer_data_set: vec![ConsumerData {
                    group_name: group.into(),
                    subscription_data_set: vec![SubscriptionData { topic: topic.into(), ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let req = RemotingCommand::request(RequestCode::HeartBeat, 1).with_body(to_json(&data));
            acl.check(local(), &signed("producer1", "producer-secret", req))
        };
        assert!(hb("g", "Audit").is_ok());
        assert!(hb("Blocked", "Audit").is_err());
        assert!(hb("g", "Orders").is_err());
        let junk = RemotingCommand::request(RequestCode::HeartBeat, 1).with_body(&b"{"[..]);
        let r = acl.check(local(), &signed("producer1", "producer-secret", junk));
        assert!(matches!(r, Err(Denied::Unreadable { code: 34, .. })), "{r:?}");
    }

    proptest! {
        #[test]
        fn check_never_panics(
            code in prop_oneof![Just(10), Just(11), Just(12), Just(14), Just(15), Just(34), Just(35), Just(36), Just(38), Just(310), Just(320), 0i32..1000],
            fields in proptest::collection::btree_map("[a-zA-Z]{1,12}", "[ -~]{0,12}", 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            ak in prop_oneof![Just("producer1".to_string()), Just("admin001".to_string()), "[a-z0-9]{0,10}"],
            sign_it: bool,
        ) {
            let acl = acl();
            let mut req = RemotingCommand::request(code, 1).with_body(body);
            req.ext_fields.extend(fields);
            if sign_it {
                Credentials::new(ak, "producer-secret").sign(&mut req);
            }
            let _ = acl.check(local(), &req);
        }
    }
}
