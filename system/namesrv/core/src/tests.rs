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
    register_in(ns, now, conn, "DefaultCluster", name, addr, id, topics)
}

#[allow(clippy::too_many_arguments)] // A test helper mirroring the registration header.
fn register_in(
    ns: &mut NamesrvCore,
    now: u64,
    conn: u64,
    cluster: &str,
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
        cluster_name: cluster.into(),
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

#[test]
fn reregistration_from_a_new_address_takes_over_the_broker_id() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    assert_eq!(register(&mut ns, 0, 1, "X", "127.0.0.1:1001", 0, &["T"]).code, 0);
    // The same brokerName + brokerId from another address: a restart on another port, or a
    // second broker given the same name by mistake. RocketMQ lets the newer one take over.
    assert_eq!(register(&mut ns, 10, 2, "X", "127.0.0.1:1002", 0, &["T"]).code, 0);
    ns.assert_invariants();
    let r = route(&mut ns, "T").unwrap();
    assert_eq!(r.broker_datas.len(), 1);
    assert_eq!(r.broker_datas[0].broker_addrs, BTreeMap::from([(0, "127.0.0.1:1002".to_string())]));
    assert_eq!(ns.live_brokers(), vec!["127.0.0.1:1002".to_string()], "the old address left the live table");
    assert!(ns.drain_events().contains(&Event::BrokerRemoved { addr: "127.0.0.1:1001".into() }));
    // The old address's connection closing later must not remove the new owner.
    ns.on_conn_closed(20, ConnId(1));
    assert_eq!(route(&mut ns, "T").unwrap().broker_datas[0].master_addr(), Some("127.0.0.1:1002"));
    // And the old address coming back takes the id back, leaving one entry again.
    assert_eq!(register(&mut ns, 30, 3, "X", "127.0.0.1:1001", 0, &["T"]).code, 0);
    assert_eq!(ns.live_brokers(), vec!["127.0.0.1:1001".to_string()]);
}

#[test]
fn an_address_that_changes_broker_name_leaves_its_old_name() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    register(&mut ns, 0, 1, "X", "a:1", 0, &["T"]);
    register(&mut ns, 10, 1, "Y", "a:1", 0, &["U"]);
    ns.assert_invariants();
    assert_eq!(route(&mut ns, "T"), Err(17), "X had only a:1, which now is Y");
    let u = route(&mut ns, "U").unwrap();
    assert_eq!(u.broker_datas[0].broker_name, "Y");
    ns.on_conn_closed(20, ConnId(1));
    ns.assert_invariants();
    assert!(ns.live_brokers().is_empty());
    assert_eq!(route(&mut ns, "U"), Err(17));
}

mod arbitrary_registrations {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Register { conn: u64, name: u8, addr: u8, id: i64, cluster: u8, topics: u8 },
        Unregister { addr: u8 },
        Close { conn: u64 },
        Tick { advance_ms: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..4, 0u8..3, 0u8..4, 0i64..3, 0u8..2, 0u8..4).prop_map(|(conn, name, addr, id, cluster, topics)| {
                Step::Register { conn, name, addr, id, cluster, topics }
            }),
            1 => (0u8..4).prop_map(|addr| Step::Unregister { addr }),
            1 => (0u64..4).prop_map(|conn| Step::Close { conn }),
            1 => (0u64..200_000).prop_map(|advance_ms| Step::Tick { advance_ms }),
        ]
    }

    proptest! {
        /// Any interleaving of registrations (names, ids, addresses and clusters reused in every
        /// combination), unregistrations, closed connections and expiry keeps the tables
        /// consistent: `handle` asserts the invariants after every request.
        #[test]
        fn tables_stay_consistent(steps in proptest::collection::vec(step(), 1..60)) {
            let mut ns = NamesrvCore::new(NamesrvConfig::default());
            let mut now = 0;
            for s in steps {
                match s {
                    Step::Register { conn, name, addr, id, cluster, topics } => {
                        let topic_names = ["T0", "T1", "T2"];
                        let t: Vec<&str> = topic_names.iter().take(usize::from(topics)).copied().collect();
                        let (cluster, name, addr) = (format!("c{cluster}"), format!("b{name}"), format!("a:{addr}"));
                        let resp = register_in(&mut ns, now, conn, &cluster, &name, &addr, id, &t);
                        prop_assert_eq!(resp.code, 0);
                    }
                    Step::Unregister { addr } => {
                        let h = UnregisterBrokerRequestHeader {
                            broker_addr: format!("a:{addr}"),
                            broker_id: 0,
                            broker_name: "b0".into(),
                            cluster_name: "DefaultCluster".into(),
                        };
                        let req = RemotingCommand::request_with(RequestCode::UnregisterBroker, 1, &h);
                        prop_assert_eq!(ns.handle(now, ConnId(9), &req).unwrap().code, 0);
                    }
                    Step::Close { conn } => ns.on_conn_closed(now, ConnId(conn)),
                    Step::Tick { advance_ms } => {
                        now += advance_ms;
                        ns.tick(now);
                    }
                }
                ns.assert_invariants();
                for addr in ns.live_brokers() {
                    let owners = ns.broker_addr_table.values().flat_map(|d| d.broker_addrs.values()).filter(|a| **a == addr).count();
                    prop_assert_eq!(owners, 1, "address {} holds exactly one slot", addr);
                }
            }
        }
    }
}

#[test]
fn unsafe_topic_names_never_enter_the_routes() {
    let mut ns = NamesrvCore::new(NamesrvConfig::default());
    // A registration carrying a bad name (a foreign or older broker): the good topics route,
    // the bad one is left out.
    let bad = "%RETRY%../../../escaped_retry";
    assert_eq!(register(&mut ns, 0, 1, "b1", "a:1", 0, &["Good", bad, "has space"]).code, 0);
    ns.assert_invariants();
    assert!(route(&mut ns, "Good").is_ok());
    let req = RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver, 4);
    let list: TopicList = from_json(&ns.handle(0, ConnId(1), &req).unwrap().body).unwrap();
    assert_eq!(list.topic_list, vec!["Good".to_string()]);
    for name in [bad, "a/b", "..", "a b", "ctl\u{1}", &"t".repeat(128)] {
        assert_eq!(route(&mut ns, name), Err(ResponseCode::SystemError.code()), "{name:?}");
        let qd =
            QueueData { broker_name: "b1".into(), read_queue_nums: 1, write_queue_nums: 1, perm: 6, topic_sys_flag: 0 };
        let body = TopicRouteData { queue_datas: vec![qd], ..Default::default() };
        let req = RemotingCommand::request(RequestCode::RegisterTopicInNamesrv, 5)
            .with_ext("topic", name)
            .with_body(to_json(&body));
        assert_eq!(ns.handle(0, ConnId(1), &req).unwrap().code, ResponseCode::SystemError.code(), "{name:?}");
        let req = RemotingCommand::request(RequestCode::DeleteTopicInNamesrv, 6).with_ext("topic", name);
        assert_eq!(ns.handle(0, ConnId(1), &req).unwrap().code, ResponseCode::SystemError.code(), "{name:?}");
    }
    let list: TopicList = from_json(
        &ns.handle(0, ConnId(1), &RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver, 7))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(list.topic_list, vec!["Good".to_string()]);
}

mod acl {
    use super::*;
    use rmq_acl::{Credentials, PlainAcl};

    const ACL: &str = "
globalWhiteRemoteAddresses: ['10.0.0.*']
accounts:
  - accessKey: broker-a1
    secretKey: broker-secret
    admin: true
  - accessKey: client01
    secretKey: client-secret
    defaultTopicPerm: PUB|SUB
    defaultGroupPerm: SUB
";

    fn ns() -> NamesrvCore {
        let acl = std::sync::Arc::new(PlainAcl::parse(ACL).unwrap());
        let mut ns = NamesrvCore::new(NamesrvConfig { acl: Some(acl), ..NamesrvConfig::default() });
        ns.on_conn_opened(0, ConnId(1), "127.0.0.1:5000".parse().unwrap());
        ns.on_conn_opened(0, ConnId(2), "10.0.0.9:5000".parse().unwrap());
        ns
    }

    fn reg_req(name: &str, addr: &str) -> RemotingCommand {
        let h = RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: String::new(),
            broker_id: 0,
            compressed: Some(false),
            body_crc32: None,
        };
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                topic_config_table: BTreeMap::from([("T".to_string(), TopicConfig::new("T", 4))]),
                data_version: DataVersion::default(),
            },
            filter_server_list: vec![],
        };
        RemotingCommand::request_with(RequestCode::RegisterBroker, 1, &h).with_body(to_json(&body))
    }

    fn route_req() -> RemotingCommand {
        RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 2).with_ext("topic", "T")
    }

    #[test]
    fn writes_need_an_admin_and_reads_a_signature() {
        let mut ns = ns();
        let r = ns.handle(0, ConnId(1), &reg_req("b", "127.0.0.1:10911")).unwrap();
        assert_eq!(r.code, 16, "an unsigned registration from a non-white peer");
        assert!(ns.live_brokers().is_empty());
        let client = Credentials::new("client01", "client-secret");
        let r = ns.handle(0, ConnId(1), &client.signed(reg_req("b", "127.0.0.1:10911"))).unwrap();
        assert_eq!(r.code, 16, "{:?}", r.remark);
        assert!(r.remark.unwrap().contains("admin"));
        let broker = Credentials::new("broker-a1", "broker-secret");
        let r = ns.handle(0, ConnId(1), &broker.signed(reg_req("b", "127.0.0.1:10911"))).unwrap();
        assert_eq!(r.code, 0, "{:?}", r.remark);
        assert_eq!(ns.handle(0, ConnId(1), &route_req()).unwrap().code, 16, "unsigned route query");
        assert_eq!(ns.handle(0, ConnId(1), &client.signed(route_req())).unwrap().code, 0);
        let wrong = Credentials::new("client01", "not-the-secret");
        assert_eq!(ns.handle(0, ConnId(1), &wrong.signed(route_req())).unwrap().code, 16);
    }

    #[test]
    fn a_white_peer_needs_no_signature_and_an_unknown_peer_is_not_white() {
        let mut ns = ns();
        assert_eq!(ns.handle(0, ConnId(2), &reg_req("b", "10.0.0.9:10911")).unwrap().code, 0);
        assert_eq!(ns.handle(0, ConnId(2), &route_req()).unwrap().code, 0);
        assert_eq!(ns.handle(0, ConnId(3), &route_req()).unwrap().code, 16, "a connection never opened");
        ns.on_conn_closed(0, ConnId(2));
        assert_eq!(ns.handle(0, ConnId(2), &route_req()).unwrap().code, 16, "its address is forgotten");
    }
}
