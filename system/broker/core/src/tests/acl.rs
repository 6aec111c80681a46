//! `aclEnable`: the check at the request entry and the signing of the broker's own requests.

use std::sync::Arc;

use super::*;
use rmq_acl::{Credentials, PlainAcl};

const ACL: &str = "
accounts:
  - accessKey: producer1
    secretKey: producer-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [Orders=PUB|SUB]
  - accessKey: admin001
    secretKey: admin-secret
    admin: true
";

fn with_acl() -> Harness<MemDirectory> {
    let acl = Arc::new(PlainAcl::parse(ACL).unwrap());
    mem(BrokerConfig { acl: Some(acl), ..Default::default() })
}

fn send_req(topic: &str) -> RemotingCommand {
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2, 0).with_body(&b"m"[..]);
    req.ext_fields = send_header(topic, 0).to_ext_v2();
    req
}

#[test]
fn unsigned_and_wrongly_signed_requests_are_refused_and_change_nothing() {
    let mut h = with_acl();
    let resp = h.call(1, send_req("Orders"));
    assert_eq!(resp.code, ResponseCode::NoPermission.code());
    assert!(resp.remark.as_deref().unwrap_or("").contains("no AccessKey"), "{:?}", resp.remark);
    let resp = h.call(1, Credentials::new("producer1", "wrong-secret").signed(send_req("Orders")));
    assert_eq!(resp.code, 16);
    assert!(resp.remark.as_deref().unwrap_or("").contains("signature"), "{:?}", resp.remark);
    assert!(h.core.topics.get("Orders").is_none(), "a refused send creates nothing");
    assert_eq!(h.core.store.commit_log_max_offset(), 0, "a refused send stores nothing");
    // One-way requests that are refused get no answer at all.
    h.request(1, send_req("Orders").oneway());
    assert!(h.drain().is_empty());
}

#[test]
fn signed_permitted_requests_are_carried_out() {
    let mut h = with_acl();
    let producer = Credentials::new("producer1", "producer-secret");
    let resp = h.call(1, producer.signed(send_req("Orders")));
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    let pull = RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header("Orders", 0, 0, 0));
    let resp = h.call(1, producer.signed(pull));
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    let resp = h.call(1, producer.signed(send_req("Payments")));
    assert_eq!(resp.code, 16, "defaultTopicPerm DENY");
    let create = super::names::create_topic("Payments");
    assert_eq!(h.call(1, producer.signed(create.clone())).code, 16, "not an admin");
    assert!(h.core.topics.get("Payments").is_none());
    assert_eq!(h.call(1, Credentials::new("admin001", "admin-secret").signed(create)).code, 0);
    assert!(h.core.topics.get("Payments").is_some());
}

#[test]
fn own_requests_are_signed_with_the_broker_credentials() {
    let creds = Credentials::new("broker-a1", "broker-secret");
    let mut h = mem(BrokerConfig { credentials: Some(creds.clone()), ..Default::default() });
    h.advance(0);
    let reg = std::iter::from_fn(|| h.core.poll_output()).find_map(|o| match o {
        Output::RegisterBroker(c) => Some(c),
        _ => None,
    });
    let reg = reg.expect("a registration at start");
    assert_eq!(reg.ext("AccessKey"), Some("broker-a1"));
    let expected = rmq_acl::sign::signature("broker-secret", &rmq_acl::sign::signed_content(&reg));
    assert_eq!(reg.ext("Signature"), Some(expected.as_str()));
    assert_eq!(h.core.unregistration().ext("AccessKey"), Some("broker-a1"));
}
