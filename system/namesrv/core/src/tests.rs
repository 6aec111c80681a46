use super::*;
use rmq_proto::body::{DataVersion, TopicConfigSerializeWrapper};

fn register(
    ns: &mut NamesrvCore,
    now: u64,
    conn: u64,
    name: &str,
    addr: &str,
    id: i64,
    topics: &[&str],
) -> RemotingCommand {
    let mut table = BTreeMap::new();
    for t in topics {
        table.insert(t.to_string(), TopicConfig::new(t, 4));
    }
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: table,
            data_version: DataVersion { timestamp: now as i64, counter: 1, state_version: 0 },
        },
        filter_server_list: vec![],
    };
    let body = to_json(&body);
    let h = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: format!("{addr}1"),
        broker_id: id,
        compressed: Some(false),
        body_crc32: Some(crc32fast::hash(&body) as i32),
    };
    let req = RemotingCommand::request_with(RequestCode::RegisterBroker, 1, &h).with_body(body);
    ns.handle(now, ConnId(conn), &req).unwrap()
}

fn route(ns: &mut NamesrvCore, topic: &str) -> Result<TopicRouteData, i32> {
    let req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 2).with_ext("topic", topic);
    let resp = ns.handle(0, ConnId(99), &req).unwrap();
    if resp.code == 0 {
        Ok(from_json(&resp.body).unwrap())
    } else {
        Err(resp.code)
    }
}

#[test]
fn registered_topics_are_routable() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    assert_eq!(register(&mut ns, 0, 1, "b1", "127.0.0.1:10911", 0, &["T1", "T2"]).code, 0);
    assert_eq!(register(&mut ns, 0, 2, "b2", "127.0.0.1:10921", 0, &["T1"]).code, 0);
    let r = route(&mut ns, "T1").unwrap();
    assert_eq!(r.queue_datas.len(), 2);
    assert_eq!(r.broker_datas.len(), 2);
    assert_eq!(route(&mut ns, "T2").unwrap().broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
    assert_eq!(route(&mut ns, "nope"), Err(17));
}

#[test]
fn silent_broker_expires_after_120s_but_not_before() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    register(&mut ns, 0, 1, "b1", "a:1", 0, &["T"]);
    ns.tick(119_000);
    assert!(route(&mut ns, "T").is_ok());
    register(&mut ns, 100_000, 1, "b1", "a:1", 0, &["T"]);
    ns.tick(215_000);
    assert!(route(&mut ns, "T").is_ok(), "heartbeat at 100 s keeps it until 220 s");
    ns.tick(225_000);
    assert_eq!(route(&mut ns, "T"), Err(17));
    assert!(ns.drain_events().iter().any(|e| matches!(e, Event::BrokerExpired { .. })));
}

#[test]
fn closed_connection_removes_broker_and_slave_keeps_read_route() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    register(&mut ns, 0, 1, "b1", "m:1", 0, &["T"]);
    let resp = register(&mut ns, 0, 2, "b1", "s:1", 1, &["T"]);
    assert_eq!(resp.ext("masterAddr"), Some("m:1"));
    ns.on_conn_closed(5, ConnId(1));
    let r = route(&mut ns, "T").unwrap();
    assert_eq!(r.broker_datas[0].master_addr(), None, "no master: no writes");
    assert_eq!(r.broker_datas[0].broker_addrs.get(&1).map(String::as_str), Some("s:1"));
    ns.on_conn_closed(6, ConnId(2));
    assert_eq!(route(&mut ns, "T"), Err(17));
}

#[test]
fn topics_dropped_by_a_master_leave_the_route() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    register(&mut ns, 0, 1, "b1", "m:1", 0, &["T", "U"]);
    register(&mut ns, 10, 1, "b1", "m:1", 0, &["T"]);
    assert_eq!(route(&mut ns, "U"), Err(17));
}

#[test]
fn bad_input_gets_error_codes_not_panics() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    let req = RemotingCommand::request(RequestCode::RegisterBroker, 1).with_body(&b"{not json"[..]);
    assert_eq!(ns.handle(0, ConnId(1), &req).unwrap().code, ResponseCode::InvalidParameter.code());
    let h = RegisterBrokerRequestHeader {
        broker_name: "b".into(),
        broker_addr: "a:1".into(),
        cluster_name: "c".into(),
        ha_server_addr: "a:2".into(),
        broker_id: 0,
        compressed: None,
        body_crc32: Some(12345),
    };
    let req = RemotingCommand::request_with(RequestCode::RegisterBroker, 1, &h).with_body(&b"{}"[..]);
    assert_eq!(ns.handle(0, ConnId(1), &req).unwrap().code, ResponseCode::InvalidParameter.code());
    let req = RemotingCommand::request(9999, 1);
    assert_eq!(ns.handle(0, ConnId(1), &req).unwrap().code, ResponseCode::RequestCodeNotSupported.code());
    let oneway = RemotingCommand::request(9999, 1).oneway();
    assert!(ns.handle(0, ConnId(1), &oneway).is_none());
}

#[test]
fn cluster_info_and_topic_list() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    register(&mut ns, 0, 1, "b1", "m:1", 0, &["T", "U"]);
    let req = RemotingCommand::request(RequestCode::GetBrokerClusterInfo, 3);
    let info: ClusterInfo = from_json(&ns.handle(0, ConnId(1), &req).unwrap().body).unwrap();
    assert_eq!(info.cluster_addr_table["DefaultCluster"], vec!["b1".to_string()]);
    let req = RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver, 4);
    let list: TopicList = from_json(&ns.handle(0, ConnId(1), &req).unwrap().body).unwrap();
    assert_eq!(list.topic_list, vec!["T".to_string(), "U".to_string()]);
}
