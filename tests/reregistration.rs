//! Issue 7's zombie probe against the real `mqnamesrv`: broker X id 0 registers from address
//! A, then from address B (a broker restarted on another port, or two brokers given the same
//! name). That used to panic a NameServer worker and leave a process that accepted no more
//! connections. Now the newer registration takes over the id, as RocketMQ's
//! `RouteInfoManager.registerBroker` does: the route shows B only, A left every table, and the
//! NameServer keeps serving.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use rmq_proto::body::{
    from_json, to_json, ClusterInfo, DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper,
    TopicRouteData,
};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::RegisterBrokerRequestHeader;
use rmq_proto::RemotingCommand;

fn registration(addr: &str) -> RemotingCommand {
    let body = to_json(&RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: BTreeMap::from([("Orders".to_string(), TopicConfig::new("Orders", 4))]),
            data_version: DataVersion { timestamp: 1, counter: 1, state_version: 0 },
        },
        filter_server_list: vec![],
    });
    let h = RegisterBrokerRequestHeader {
        broker_name: "X".into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: addr.into(),
        broker_id: 0,
        compressed: Some(false),
        body_crc32: None,
    };
    RemotingCommand::request_with(RequestCode::RegisterBroker, 1, &h).with_body(body)
}

fn route(s: &mut TcpStream) -> TopicRouteData {
    let resp =
        common::call(s, &RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 2).with_ext("topic", "Orders"));
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    from_json(&resp.body).unwrap()
}

#[test]
fn a_broker_id_registered_from_a_second_address_moves_there_and_the_namesrv_keeps_serving() {
    let ns = common::namesrv();
    let mut broker_a = TcpStream::connect(&ns.addr).unwrap();
    let mut broker_b = TcpStream::connect(&ns.addr).unwrap();
    assert_eq!(common::call(&mut broker_a, &registration("127.0.0.1:30911")).code, 0);
    assert_eq!(route(&mut broker_a).broker_datas[0].master_addr(), Some("127.0.0.1:30911"));
    assert_eq!(common::call(&mut broker_b, &registration("127.0.0.1:31911")).code, 0);

    // A fresh connection is accepted and served: no zombie.
    let mut client = TcpStream::connect(&ns.addr).unwrap();
    let r = route(&mut client);
    assert_eq!(r.broker_datas.len(), 1);
    assert_eq!(r.broker_datas[0].broker_addrs, BTreeMap::from([(0, "127.0.0.1:31911".to_string())]), "B only");
    let resp = common::call(&mut client, &RemotingCommand::request(RequestCode::GetBrokerClusterInfo, 3));
    let info: ClusterInfo = from_json(&resp.body).unwrap();
    assert!(!String::from_utf8_lossy(&resp.body).contains("30911"), "A left every table: {info:?}");
    // A's connection closing later does not take B's registration with it.
    drop(broker_a);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(route(&mut client).broker_datas[0].master_addr(), Some("127.0.0.1:31911"));
    // And the real tools still work against it.
    let list = common::mqadmin(&["clusterList", "-n", &ns.addr]);
    assert!(list.contains("127.0.0.1:31911") && !list.contains("127.0.0.1:30911"), "{list}");
}
