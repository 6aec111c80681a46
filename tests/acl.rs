//! Access control (`aclEnable=true`, RocketMQ ACL 1.0) with the real binaries on 127.0.0.1:
//! unsigned, wrongly signed and unauthorised requests get NO_PERMISSION (16) with a remark;
//! signed, permitted ones are carried out; white addresses (global and per account) waive the
//! signature; the NameServer refuses unsigned registrations and route queries; a bad ACL file
//! refuses start naming the file and line. With ACL off the other test files cover that
//! nothing changed.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rmq_acl::Credentials;
use rmq_proto::codes::RequestCode;
use rmq_proto::header::{PullMessageRequestHeader, SendMessageRequestHeader};
use rmq_proto::RemotingCommand;

/// The broker's ACL: a producer that may publish to Orders only, a consumer that may read
/// everything but the Secret topic, an admin, and the broker's own account.
const BROKER_ACL: &str = "
accounts:
  - accessKey: producer1
    secretKey: producer-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - Orders=PUB
      - Secret=DENY
  - accessKey: consumer1
    secretKey: consumer-secret
    defaultTopicPerm: SUB
    defaultGroupPerm: SUB
    topicPerms: [Secret=DENY]
  - accessKey: admin001
    secretKey: admin-secret
    admin: true
  - accessKey: white-app
    secretKey: white-app-secret
    whiteRemoteAddress: 127.0.0.1
    defaultTopicPerm: DENY
    topicPerms: [Orders=PUB]
";

/// The NameServer's ACL: the broker's account (admin: it registers) and the clients.
const NAMESRV_ACL: &str = "
accounts:
  - accessKey: broker-a1
    secretKey: broker-secret
    admin: true
  - accessKey: producer1
    secretKey: producer-secret
  - accessKey: consumer1
    secretKey: consumer-secret
  - accessKey: admin001
    secretKey: admin-secret
    admin: true
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A NameServer started with `-c namesrv.conf` (ACL on, `plain_acl.yml` next to it).
fn namesrv_with_acl(dir: &Path) -> common::Proc {
    write(dir, "plain_acl.yml", NAMESRV_ACL);
    let conf = write(dir, "namesrv.conf", "aclEnable=true\n");
    let bin = env!("CARGO_BIN_EXE_mqnamesrv");
    common::spawn(bin, &["-c", &conf, "--listen", "127.0.0.1:0"], "boot success", "address ")
}

/// A broker with `conf` (plus the broker's account), waiting until the NameServer lists it.
fn broker(namesrv: &str, dir: &Path, conf: &str) -> common::Proc {
    let conf = write(dir, "broker.conf", &format!("{conf}accessKey=broker-a1\nsecretKey=broker-secret\n"));
    let conf = common::test_broker_conf(&dir.join("store"), Some(Path::new(&conf))).to_string_lossy().into_owned();
    let store = dir.join("store").to_string_lossy().into_owned();
    let args = ["-n", namesrv, "--listen", "127.0.0.1:0", "--store", &store, "-c", &conf];
    let p = common::spawn(env!("CARGO_BIN_EXE_mqbroker"), &args, "boot success", ", ");
    for _ in 0..300 {
        let out = mqadmin(&["clusterList", "-n", namesrv], Some(("admin001", "admin-secret")));
        if String::from_utf8_lossy(&out.stdout).contains(&p.addr) {
            return p;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("broker {} never registered with {namesrv}", p.addr);
}

/// Runs mqadmin, signing with `creds` through the environment (never inherited from ours).
fn mqadmin(args: &[&str], creds: Option<(&str, &str)>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqadmin"));
    cmd.args(args).env_remove("ROCKETMQ_ACCESS_KEY").env_remove("ROCKETMQ_SECRET_KEY");
    if let Some((ak, sk)) = creds {
        cmd.env("ROCKETMQ_ACCESS_KEY", ak).env("ROCKETMQ_SECRET_KEY", sk);
    }
    cmd.output().expect("running mqadmin")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn send(topic: &str, body: &str) -> RemotingCommand {
    let h = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        ..Default::default()
    };
    let req = RemotingCommand::request(RequestCode::SendMessageV2, 1).with_body(body.as_bytes().to_vec());
    RemotingCommand { ext_fields: h.to_ext_v2(), ..req }
}

fn pull(topic: &str, group: &str) -> RemotingCommand {
    let h = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        max_msg_nums: 32,
        subscription: Some("*".into()),
        expression_type: Some("TAG".into()),
        ..Default::default()
    };
    RemotingCommand::request_with(RequestCode::PullMessage, 2, &h)
}

fn assert_refused(resp: &RemotingCommand, remark_has: &str) {
    assert_eq!(resp.code, 16, "NO_PERMISSION expected, got {} {:?}", resp.code, resp.remark);
    let remark = resp.remark.as_deref().unwrap_or_default();
    assert!(remark.contains(remark_has), "remark {remark:?} lacks {remark_has:?}");
}

#[test]
fn unsigned_sends_are_refused_and_signed_permitted_ones_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv_with_acl(&dir.path().join("ns").tap_mkdir());
    let bdir = dir.path().join("broker").tap_mkdir();
    write(&bdir, "broker_acl.yml", BROKER_ACL);
    let broker = broker(&ns.addr, &bdir, "aclEnable=true\naclFile=broker_acl.yml\n");
    let producer = Credentials::new("producer1", "producer-secret");
    let mut conn = TcpStream::connect(&broker.addr).unwrap();

    // The "done when": unsigned is refused with 16, signed and permitted succeeds.
    assert_refused(&common::call(&mut conn, &send("Orders", "unsigned")), "no AccessKey");
    let ok = common::call(&mut conn, &producer.signed(send("Orders", "signed-0")));
    assert_eq!(ok.code, 0, "{:?}", ok.remark);
    // Wrong secret, and a signed request altered after signing.
    let wrong = Credentials::new("producer1", "not-the-secret");
    assert_refused(&common::call(&mut conn, &wrong.signed(send("Orders", "x"))), "signature check failed");
    let mut tampered = producer.signed(send("Orders", "x"));
    tampered.body = bytes::Bytes::from_static(b"tampered");
    assert_refused(&common::call(&mut conn, &tampered), "signature check failed");
    // Permissions: DENY, an unlisted topic under defaultTopicPerm DENY, SUB without PUB.
    assert_refused(&common::call(&mut conn, &producer.signed(send("Secret", "x"))), "topic Secret");
    assert_refused(&common::call(&mut conn, &producer.signed(send("Payments", "x"))), "topic Payments");
    let consumer = Credentials::new("consumer1", "consumer-secret");
    assert_refused(&common::call(&mut conn, &consumer.signed(send("Orders", "x"))), "no PUB permission");
    assert_refused(&common::call(&mut conn, &consumer.signed(pull("Secret", "g1"))), "topic Secret");
    assert_eq!(common::call(&mut conn, &consumer.signed(pull("Orders", "g1"))).code, 0);

    // The shipped tools sign with the environment's credentials.
    let p = Some(("producer1", "producer-secret"));
    let sent = mqadmin(&["sendMessage", "-n", &ns.addr, "-t", "Orders", "-p", "tool", "--count", "3", "--json"], p);
    assert!(sent.status.success(), "{}", text(&sent));
    assert_eq!(text(&sent).matches("\"SEND_OK\"").count(), 3, "{}", text(&sent));
    let unsigned = mqadmin(&["sendMessage", "-n", &ns.addr, "-t", "Orders", "-p", "x"], None);
    assert!(!unsigned.status.success() && text(&unsigned).contains("16"), "{}", text(&unsigned));
    let c = Some(("consumer1", "consumer-secret"));
    let got = mqadmin(&["consumeMessage", "-n", &ns.addr, "-t", "Orders", "-g", "G1", "--count", "4", "--json"], c);
    let got = text(&got);
    for body in ["signed-0", "tool-0", "tool-1", "tool-2"] {
        assert!(got.contains(body), "{body} not consumed: {got}");
    }
    assert!(!got.contains("unsigned") && !got.contains("tampered"), "a refused send stored nothing: {got}");

    // Admin requests: a non-admin account cannot create a topic; an admin can (flags this time).
    let create = ["updateTopic", "-n", &ns.addr, "-t", "Created", "-b", &broker.addr];
    let out = mqadmin(&[&create[..], &["--access-key", "producer1", "--secret-key", "producer-secret"]].concat(), None);
    assert!(!out.status.success() && text(&out).contains("code 16"), "{}", text(&out));
    assert!(text(&out).contains("admin"), "{}", text(&out));
    let out = mqadmin(&[&create[..], &["--access-key", "admin001", "--secret-key", "admin-secret"]].concat(), None);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_name_server_refuses_unsigned_registrations_and_route_queries() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv_with_acl(dir.path());
    let mut conn = TcpStream::connect(&ns.addr).unwrap();
    let reg = RemotingCommand::request(RequestCode::RegisterBroker, 1)
        .with_ext("brokerName", "rogue")
        .with_ext("brokerAddr", "127.0.0.1:1")
        .with_ext("clusterName", "DefaultCluster")
        .with_ext("haServerAddr", "")
        .with_ext("brokerId", "0")
        .with_body(&b"{}"[..]);
    assert_refused(&common::call(&mut conn, &reg), "no AccessKey");
    let client = Credentials::new("producer1", "producer-secret");
    assert_refused(&common::call(&mut conn, &client.signed(reg)), "needs an admin account");
    let route = RemotingCommand::request(RequestCode::GetBrokerClusterInfo, 2);
    assert_refused(&common::call(&mut conn, &route), "no AccessKey");
    assert_eq!(common::call(&mut conn, &client.signed(route.clone())).code, 0);
    let wrong = Credentials::new("producer1", "wrong-secret");
    assert_refused(&common::call(&mut conn, &wrong.signed(route)), "signature check failed");
    let out = mqadmin(&["clusterList", "-n", &ns.addr], None);
    assert!(!out.status.success() && text(&out).contains("code 16"), "{}", text(&out));
    assert!(!text(&mqadmin(&["clusterList", "-n", &ns.addr], Some(("admin001", "admin-secret")))).contains("rogue"));
}

#[test]
fn white_addresses_waive_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::namesrv();
    let white = format!("globalWhiteRemoteAddresses: ['127.0.0.{{1,2}}']\n{BROKER_ACL}");
    write(dir.path(), "plain_acl.yml", &white);
    let broker = broker(&ns.addr, dir.path(), "aclEnable=true\n");
    let mut conn = TcpStream::connect(&broker.addr).unwrap();
    // 127.0.0.1 is globally white: no signature, no permission check.
    assert_eq!(common::call(&mut conn, &send("Secret", "white")).code, 0);
    drop(conn);
    drop(broker);

    // Without the global entry, an account's whiteRemoteAddress waives only its signature.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plain_acl.yml", BROKER_ACL);
    let broker = self::broker(&ns.addr, dir.path(), "aclEnable=true\n");
    let mut conn = TcpStream::connect(&broker.addr).unwrap();
    let named = |topic: &str| send(topic, "w").with_ext("AccessKey", "white-app");
    assert_eq!(common::call(&mut conn, &named("Orders")).code, 0);
    assert_refused(&common::call(&mut conn, &named("Secret")), "topic Secret");
    assert_refused(&common::call(&mut conn, &send("Orders", "w").with_ext("AccessKey", "producer1")), "signature");
}

#[test]
fn acl_off_needs_no_signature_and_a_bad_acl_file_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::namesrv();
    let broker = broker(&ns.addr, dir.path(), "aclEnable=false\n");
    let mut conn = TcpStream::connect(&broker.addr).unwrap();
    assert_eq!(common::call(&mut conn, &send("Anything", "plain")).code, 0);
    drop(broker);

    let bad = write(
        dir.path(),
        "bad_acl.yml",
        "accounts:\n  - accessKey: producer1\n    secretKey: producer-secret\n    topicPerms: [Orders=WRITE]\n",
    );
    let conf = write(dir.path(), "bad.conf", &format!("aclEnable=true\naclFile={bad}\n"));
    let store = dir.path().join("store2").to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_mqbroker"))
        .args(["-n", &ns.addr, "--listen", "127.0.0.1:0", "--store", &store, "-c", &conf])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a bad ACL file");
    assert!(err.contains("bad_acl.yml") && err.contains("line 4") && err.contains("topicPerms[0]"), "{err}");
    let conf = write(dir.path(), "ns.conf", "aclEnable=true\naclFile=missing_acl.yml\n");
    let out =
        Command::new(env!("CARGO_BIN_EXE_mqnamesrv")).args(["-c", &conf, "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("missing_acl.yml") && err.contains("line 2: aclFile"), "{err}");
}

#[test]
fn the_example_acl_file_loads_and_means_what_its_comments_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plain_acl.yml");
    let acl = rmq_acl::PlainAcl::load(&path).unwrap();
    let local = Some("127.0.0.1".parse().unwrap());
    let producer = Credentials::new("orders-producer", "orders-secret-key");
    assert!(acl.check(local, &producer.signed(send("Orders", "x"))).is_ok());
    assert!(acl.check(local, &producer.signed(send("Audit", "x"))).is_err());
    let consumer = Credentials::new("billing-consumer", "billing-secret-key");
    assert!(acl.check(local, &consumer.signed(pull("Orders", "billing"))).is_ok());
    assert!(acl.check(local, &consumer.signed(pull("Orders", "other"))).is_err());
    assert!(acl.check(local, &consumer.signed(pull("Audit", "billing"))).is_err());
    assert!(acl.accounts["rocketmq-admin"].admin && acl.global_white.is_empty());
}

/// The client library (not only the tools): producers and push consumers sign with their
/// configured credentials against an in-process broker with ACL on.
#[test]
fn producers_and_push_consumers_sign_with_their_credentials() {
    use rmq_client::{ClientConfig, ConsumeFromWhere, ConsumeResult, Message, Producer, PushConsumer};
    use rmq_rt::RealEnv;
    use std::sync::{Arc, Mutex};

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let acl = Arc::new(rmq_acl::PlainAcl::parse(BROKER_ACL).unwrap());
        let flush = rmq_broker_core::FlushDiskType::AsyncFlush;
        let cluster = rmq_tools::embedded::EmbeddedCluster::start(flush, |c| {
            c.acl = Some(acl);
            // As tests/common's brokers: not at the mercy of how full the host's disk is.
            (c.disk_warning_level_ratio, c.disk_clean_forcibly_ratio) = (100, 100);
        })
        .await
        .unwrap();
        let ns = cluster.namesrv_addr.clone();
        let unsigned = Producer::start(RealEnv::default(), ClientConfig::new(&ns, "pg"));
        let err = unsigned.send(Message::new("Orders", "unsigned")).await.unwrap_err().to_string();
        assert!(err.contains("code 16") && err.contains("no AccessKey"), "{err}");
        unsigned.shutdown().await;
        let config = ClientConfig::new(&ns, "pg").with_credentials(Credentials::new("producer1", "producer-secret"));
        let producer = Producer::start(RealEnv::default(), config);
        for i in 0..10 {
            producer.send(Message::new("Orders", format!("m{i}"))).await.unwrap();
        }
        let err = producer.send(Message::new("Secret", "x")).await.unwrap_err().to_string();
        assert!(err.contains("code 16") && err.contains("topic Secret"), "{err}");
        producer.shutdown().await;

        let admin = rmq_tools::admin::Admin::new(RealEnv::default(), vec![ns.clone()]);
        for _ in 0..200 {
            if admin.topic_route("Orders").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = got.clone();
        let mut config =
            ClientConfig::new(&ns, "G1").with_credentials(Credentials::new("consumer1", "consumer-secret"));
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.pull_suspend_ms = 1_000;
        let consumer = PushConsumer::start(
            RealEnv::default(),
            config,
            &[("Orders", "*")],
            move |msgs: &[rmq_client::MessageExt]| {
                sink.lock().unwrap().extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
                ConsumeResult::Success
            },
        )
        .await
        .unwrap();
        for _ in 0..200 {
            if got.lock().unwrap().len() >= 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut bodies = got.lock().unwrap().clone();
        bodies.sort();
        bodies.dedup();
        assert_eq!(
            bodies,
            (0..10).map(|i| format!("m{i}")).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
        );
        consumer.shutdown().await;
        cluster.stop().await;
    });
}

/// `create_dir_all`, returning the path.
trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
