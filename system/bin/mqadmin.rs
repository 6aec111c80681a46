//! `mqadmin`: RocketMQ-style admin commands.
//!
//! ```text
//! mqadmin updateTopic -n 127.0.0.1:9876 -t Orders -r 8 -w 8
//! mqadmin topicList -n 127.0.0.1:9876 --json
//! mqadmin topicRoute -n 127.0.0.1:9876 -t Orders
//! mqadmin clusterList -n 127.0.0.1:9876
//! mqadmin sendMessage -n 127.0.0.1:9876 -t Orders -p hello --count 100
//! mqadmin consumeMessage -n 127.0.0.1:9876 -t Orders -g G1 --count 100
//! mqadmin consumerProgress -n 127.0.0.1:9876 -g G1
//! mqadmin queryMsgByKey -n 127.0.0.1:9876 -t Orders -k order-42
//! mqadmin resetOffsetByTime -n 127.0.0.1:9876 -g G1 -t Orders -s 2026-12-01#00:00:00:000
//! mqadmin brokerStatus -n 127.0.0.1:9876 --json
//! mqadmin updateTopic -n 127.0.0.1:9876 -t Orders --access-key admin-ak --secret-key admin-sk
//! ```
//!
//! Every subcommand has `--help`; names, flags and output layouts follow RocketMQ's mqadmin,
//! and `--json` prints one JSON document (or one per line for streams of messages) for
//! scripts. Times are read and printed in UTC.
//!
//! Against servers with `aclEnable=true`, every request is signed with `--access-key` and
//! `--secret-key` (or `ROCKETMQ_ACCESS_KEY` and `ROCKETMQ_SECRET_KEY`).

/// mimalloc: the broker's per-request allocations cost a third of its CPU under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rmq_client::{ClientConfig, Message, MessageQuery, Producer, PullConsumer, PullStatus};
use rmq_namesrv_core::ORDER_TOPIC_CONFIG;
use rmq_rt::RealEnv;
use rmq_tools::admin::Admin;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "mqadmin", version, about = "RocketMQ-compatible admin tool")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// ACL access key to sign requests with (default: $ROCKETMQ_ACCESS_KEY).
    #[arg(long = "access-key", global = true)]
    access_key: Option<String>,
    /// ACL secret key to sign requests with (default: $ROCKETMQ_SECRET_KEY).
    #[arg(long = "secret-key", global = true)]
    secret_key: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create or update a topic on brokers.
    #[command(name = "updateTopic")]
    UpdateTopic {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        /// One broker address; default: every master (of the cluster given by -c).
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
        read: i32,
        #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
        write: i32,
        #[arg(short = 'o', long = "order", default_value_t = false)]
        order: bool,
    },
    /// List topics.
    #[command(name = "topicList")]
    TopicList {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
    },
    /// Show a topic's route.
    #[command(name = "topicRoute")]
    TopicRoute {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// List clusters and brokers.
    #[command(name = "clusterList")]
    ClusterList {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
    },
    /// Show a consumer group's progress per queue.
    #[command(name = "consumerProgress")]
    ConsumerProgress {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'g', long = "groupName")]
        group: String,
        #[arg(short = 't', long)]
        topic: Option<String>,
    },
    /// Delete a topic from the brokers (of a cluster) and the NameServers.
    #[command(name = "deleteTopic")]
    DeleteTopic {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
    /// Show a topic's queues: min and max offsets and the last store time, per broker.
    #[command(name = "topicStatus")]
    TopicStatus {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Create or update a subscription group.
    #[command(name = "updateSubGroup")]
    UpdateSubGroup {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        /// One broker address; default: every master (of the cluster given by -c).
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'g', long = "groupName")]
        group: String,
        #[arg(short = 's', long = "consumeEnable")]
        consume_enable: Option<bool>,
        #[arg(short = 'm', long = "consumeFromMinEnable")]
        consume_from_min_enable: Option<bool>,
        #[arg(short = 'd', long = "consumeBroadcastEnable")]
        consume_broadcast_enable: Option<bool>,
        #[arg(short = 'q', long = "retryQueueNums")]
        retry_queue_nums: Option<i32>,
        #[arg(short = 'r', long = "retryMaxTimes")]
        retry_max_times: Option<i32>,
        #[arg(short = 'i', long = "brokerId")]
        broker_id: Option<i64>,
        #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly")]
        which_broker_when_consume_slowly: Option<i64>,
        #[arg(short = 'a', long = "notifyConsumerIdsChanged")]
        notify_consumer_ids_changed: Option<bool>,
    },
    /// Delete a subscription group (and with -r its offsets).
    #[command(name = "deleteSubGroup")]
    DeleteSubGroup {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Remove the group's consumer offsets too.
        #[arg(short = 'r', long = "removeOffset", default_value_t = false)]
        remove_offset: bool,
    },
    /// Show brokers' runtime figures (put/get TPS, CommitLog offsets, disk ratio, ...).
    #[command(name = "brokerStatus")]
    BrokerStatus {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
    /// Show brokers' settings in broker.conf terms.
    #[command(name = "getBrokerConfig")]
    GetBrokerConfig {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
    /// Change a setting on running brokers (not written to broker.conf).
    #[command(name = "updateBrokerConfig")]
    UpdateBrokerConfig {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'k', long = "key")]
        key: String,
        #[arg(short = 'v', long = "value")]
        value: String,
    },
    /// Show the members of a consumer group.
    #[command(name = "consumerConnection")]
    ConsumerConnection {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
    },
    /// Show the producers of a group on a topic's brokers.
    #[command(name = "producerConnection")]
    ProducerConnection {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Show a message by its offset message id (or, with -t, by its unique id).
    #[command(name = "queryMsgById")]
    QueryMsgById {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        /// Message id(s), comma-separated.
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        /// The topic, to look a unique id up when the id is not an offset message id.
        #[arg(short = 't', long)]
        topic: Option<String>,
    },
    /// Find messages by key (one of their KEYS).
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'k', long = "msgKey")]
        key: String,
        /// Store time from (epoch ms or yyyy-MM-dd#HH:mm:ss:SSS, UTC).
        #[arg(short = 'b', long = "beginTimestamp")]
        begin: Option<String>,
        /// Store time to.
        #[arg(short = 'e', long = "endTimestamp")]
        end: Option<String>,
        #[arg(short = 'c', long = "maxNum", default_value_t = 64)]
        max: usize,
    },
    /// Show a message by its unique id (the msgId a producer reports).
    #[command(name = "queryMsgByUniqueKey")]
    QueryMsgByUniqueKey {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Show the message at a queue offset.
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        #[arg(short = 'i', long = "queueId")]
        queue_id: i32,
        #[arg(short = 'o', long = "offset")]
        offset: u64,
    },
    /// Print a topic's messages (all, or those stored within a time range), without a group.
    #[command(name = "printMsg")]
    PrintMsg {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        /// Body charset: UTF-8 only (bodies that are not UTF-8 print lossily).
        #[arg(short = 'c', long = "charsetName", default_value = "UTF-8")]
        charset: String,
        #[arg(short = 's', long = "subExpression", default_value = "*")]
        sub: String,
        #[arg(short = 'b', long = "beginTimestamp")]
        begin: Option<String>,
        #[arg(short = 'e', long = "endTimestamp")]
        end: Option<String>,
        #[arg(short = 'd', long = "printBody", default_value_t = true, action = clap::ArgAction::Set)]
        print_body: bool,
    },
    /// Move a group's offsets on a topic to the first message stored at or after a time; live
    /// members re-seat at once.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'g', long = "group")]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
        /// Epoch ms, yyyy-MM-dd#HH:mm:ss:SSS (UTC), or "now".
        #[arg(short = 's', long = "timestamp")]
        timestamp: String,
        /// Also move offsets forward (default true, as RocketMQ).
        #[arg(short = 'f', long = "force", default_value_t = true, action = clap::ArgAction::Set)]
        force: bool,
    },
    /// Move a group's offsets on a topic to the end: skip the backlog.
    #[command(name = "skipAccumulatedMessage")]
    SkipAccumulatedMessage {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'g', long = "group")]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Per topic and group: backlog and in/out rates (measured over --interval-ms).
    #[command(name = "statsAll")]
    StatsAll {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        /// Only topics with traffic.
        #[arg(short = 'a', long = "activeTopic", default_value_t = false)]
        active: bool,
        #[arg(short = 't', long)]
        topic: Option<String>,
        #[arg(long = "interval-ms", default_value_t = 1_000)]
        interval_ms: u64,
    },
    /// Send messages to every master of a cluster and print the round-trip times.
    #[command(name = "clusterRT")]
    ClusterRt {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        /// Messages per broker.
        #[arg(short = 'a', long = "amount", default_value_t = 100)]
        amount: u32,
        /// Body bytes.
        #[arg(short = 's', long = "size", default_value_t = 128)]
        size: usize,
        /// Topic to send to (default: the cluster's name, as RocketMQ).
        #[arg(short = 't', long)]
        topic: Option<String>,
    },
    /// Every group's progress on one broker.
    #[command(name = "brokerConsumeStats")]
    BrokerConsumeStats {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
    /// Set, show or delete an ordered topic's queue layout ("brokerName:queues;...") on the
    /// NameServers; producers then write only to those queues.
    #[command(name = "updateOrderConf")]
    UpdateOrderConf {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'v', long = "orderConf")]
        conf: Option<String>,
        #[arg(short = 'm', long = "method", default_value = "put")]
        method: String,
    },
    /// Send messages.
    #[command(name = "sendMessage")]
    SendMessage {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        /// Message body.
        #[arg(short = 'p', long = "body")]
        body: String,
        #[arg(short = 'k', long = "keys")]
        keys: Option<String>,
        #[arg(short = 'c', long = "tags")]
        tags: Option<String>,
        /// Send this many messages (bodies get a "-<i>" suffix when more than one).
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[arg(short = 'g', long = "group", default_value = "TOOLS_PRODUCER")]
        group: String,
    },
    /// Consume messages as a group (committing offsets) and print them.
    #[command(name = "consumeMessage")]
    ConsumeMessage {
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv: String,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'g', long = "consumerGroup", default_value = "TOOLS_CONSUMER")]
        group: String,
        /// Stop after this many messages.
        #[arg(short = 'c', long = "count", default_value_t = u64::MAX)]
        count: u64,
        /// Stop when no message arrives for this long.
        #[arg(long = "idle-ms", default_value_t = 3_000)]
        idle_ms: u64,
        /// Tag expression.
        #[arg(short = 's', long = "subExpression", default_value = "*")]
        sub: String,
    },
}

fn main() -> std::process::ExitCode {
    rmq_tools::init_tracing("warn");
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    rmq_tools::exit_status("mqadmin", result)
}

fn addrs(n: &str) -> Vec<String> {
    rmq_broker::conf::split_addrs(n)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let json = args.json;
    let env = RealEnv::default();
    let creds = rmq_tools::credentials(args.access_key, args.secret_key)?;
    let admin = |env: RealEnv, namesrv: &str| Admin::new(env, addrs(namesrv)).with_credentials(creds.clone());
    let client =
        |namesrv: &str, group: &str| ClientConfig { credentials: creds.clone(), ..ClientConfig::new(namesrv, group) };
    match args.cmd {
        Cmd::UpdateTopic { namesrv, topic, broker, cluster, read, write, order } => {
            let admin = admin(env, &namesrv);
            let targets = match broker {
                Some(b) => vec![b],
                None => admin.masters(cluster.as_deref()).await?,
            };
            admin.update_topic(&targets, &topic, read, write, order).await?;
            if json {
                println!(
                    "{}",
                    json!({ "topic": topic, "brokers": targets, "readQueueNums": read, "writeQueueNums": write })
                );
            } else {
                println!("create topic to {} success.", targets.join(","));
            }
        }
        Cmd::TopicList { namesrv } => {
            let list = admin(env, &namesrv).topic_list().await?;
            if json {
                println!("{}", json!({ "topicList": list }));
            } else {
                list.iter().for_each(|t| println!("{t}"));
            }
        }
        Cmd::TopicRoute { namesrv, topic } => {
            let route = admin(env, &namesrv).topic_route(&topic).await?;
            println!("{}", serde_json::to_string_pretty(&route)?);
        }
        Cmd::ClusterList { namesrv } => {
            let info = admin(env, &namesrv).cluster_info().await?;
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                println!("{:<20} {:<20} {:<6} #Addr", "#Cluster Name", "#Broker Name", "#BID");
                for (cluster, names) in &info.cluster_addr_table {
                    for name in names {
                        for (id, addr) in
                            info.broker_addr_table.get(name).map(|d| d.broker_addrs.clone()).unwrap_or_default()
                        {
                            println!("{cluster:<20} {name:<20} {id:<6} {addr}");
                        }
                    }
                }
            }
        }
        Cmd::ConsumerProgress { namesrv, group, topic } => {
            let stats = admin(env, &namesrv).consumer_progress(&group, topic.as_deref()).await?;
            if json {
                println!("{}", json!({ "group": group, "queues": stats.queues, "diffTotal": stats.diff_total() }));
            } else {
                println!(
                    "{:<32} {:<20} {:<5} {:>16} {:>16} {:>10}",
                    "#Topic", "#Broker Name", "#QID", "#Broker Offset", "#Consumer Offset", "#Diff"
                );
                for q in &stats.queues {
                    let diff = (q.broker_offset - q.consumer_offset).max(0);
                    println!(
                        "{:<32} {:<20} {:<5} {:>16} {:>16} {:>10}",
                        q.queue.topic, q.queue.broker_name, q.queue.queue_id, q.broker_offset, q.consumer_offset, diff
                    );
                }
                println!("Diff Total: {}", stats.diff_total());
            }
        }
        Cmd::DeleteTopic { namesrv, topic, cluster } => {
            let brokers = admin(env, &namesrv).delete_topic(cluster.as_deref(), &topic).await?;
            if json {
                println!("{}", json!({ "topic": topic, "brokers": brokers }));
            } else {
                println!("delete topic [{topic}] from cluster [{}] success.", cluster.as_deref().unwrap_or("*"));
                println!("delete topic [{topic}] from NameServer success.");
            }
        }
        Cmd::TopicStatus { namesrv, topic } => {
            let status = admin(env, &namesrv).topic_status(&topic).await?;
            if json {
                let brokers: Vec<_> = status.iter().map(|(b, q)| json!({ "brokerName": b, "queues": q })).collect();
                println!("{}", json!({ "topic": topic, "brokers": brokers }));
            } else {
                println!(
                    "{:<32}  {:<4}  {:<20}  {:<20}  #Last Updated",
                    "#Broker Name", "#QID", "#Min Offset", "#Max Offset"
                );
                for (broker, queues) in &status {
                    for q in queues {
                        let last = q["lastUpdateTimestamp"].as_i64().unwrap_or(0);
                        let last = if last > 0 { rmq_tools::clock::format_ms(last) } else { String::new() };
                        println!(
                            "{broker:<32}  {:<4}  {:<20}  {:<20}  {last}",
                            q["queueId"], q["minOffset"], q["maxOffset"]
                        );
                    }
                }
            }
        }
        Cmd::UpdateSubGroup {
            namesrv,
            broker,
            cluster,
            group,
            consume_enable,
            consume_from_min_enable,
            consume_broadcast_enable,
            retry_queue_nums,
            retry_max_times,
            broker_id,
            which_broker_when_consume_slowly,
            notify_consumer_ids_changed,
        } => {
            let admin = admin(env, &namesrv);
            let mut config = serde_json::Map::new();
            config.insert("groupName".into(), json!(group));
            let fields = [
                ("consumeEnable", consume_enable.map(|v| json!(v))),
                ("consumeFromMinEnable", consume_from_min_enable.map(|v| json!(v))),
                ("consumeBroadcastEnable", consume_broadcast_enable.map(|v| json!(v))),
                ("retryQueueNums", retry_queue_nums.map(|v| json!(v))),
                ("retryMaxTimes", retry_max_times.map(|v| json!(v))),
                ("brokerId", broker_id.map(|v| json!(v))),
                ("whichBrokerWhenConsumeSlowly", which_broker_when_consume_slowly.map(|v| json!(v))),
                ("notifyConsumerIdsChangedEnable", notify_consumer_ids_changed.map(|v| json!(v))),
            ];
            for (k, v) in fields {
                if let Some(v) = v {
                    config.insert(k.into(), v);
                }
            }
            let config = serde_json::Value::Object(config);
            let targets = admin.targets(broker.as_deref(), cluster.as_deref()).await?;
            for b in &targets {
                admin.update_sub_group(b, &config).await?;
                if !json {
                    println!("create subscription group to {b} success.");
                }
            }
            if json {
                println!("{}", json!({ "brokers": targets, "config": config }));
            } else {
                println!("{config}");
            }
        }
        Cmd::DeleteSubGroup { namesrv, broker, cluster, group, remove_offset } => {
            let admin = admin(env, &namesrv);
            let targets = admin.targets(broker.as_deref(), cluster.as_deref()).await?;
            for b in &targets {
                admin.delete_sub_group(b, &group, remove_offset).await?;
                if !json {
                    println!("delete subscription group [{group}] from broker [{b}] success.");
                }
            }
            if json {
                println!("{}", json!({ "group": group, "brokers": targets, "removeOffset": remove_offset }));
            }
        }
        Cmd::BrokerStatus { namesrv, broker, cluster } => {
            let admin = admin(env, &namesrv);
            let mut all = serde_json::Map::new();
            for b in admin.targets(broker.as_deref(), cluster.as_deref()).await? {
                let table = admin.runtime_info(&b).await?;
                if !json {
                    for (k, v) in &table {
                        println!("{k:<32}: {v}");
                    }
                }
                all.insert(b, json!(table));
            }
            if json {
                println!("{}", serde_json::Value::Object(all));
            }
        }
        Cmd::GetBrokerConfig { namesrv, broker, cluster } => {
            let admin = admin(env, &namesrv);
            let mut all = serde_json::Map::new();
            for b in admin.targets(broker.as_deref(), cluster.as_deref()).await? {
                let props = admin.broker_config(&b).await?;
                if !json {
                    println!("============{b}============");
                    for (k, v) in &props {
                        println!("{k:<50}=  {v}");
                    }
                }
                all.insert(b, json!(props.into_iter().collect::<std::collections::BTreeMap<_, _>>()));
            }
            if json {
                println!("{}", serde_json::Value::Object(all));
            }
        }
        Cmd::UpdateBrokerConfig { namesrv, broker, cluster, key, value } => {
            let admin = admin(env, &namesrv);
            for b in admin.targets(broker.as_deref(), cluster.as_deref()).await? {
                let remark = admin.update_broker_config(&b, &key, &value).await?;
                if json {
                    println!("{}", json!({ "broker": b, "key": key, "value": value, "remark": remark }));
                } else {
                    println!("update broker config success, {b} ({remark})");
                }
            }
        }
        Cmd::ConsumerConnection { namesrv, group } => {
            let members = admin(env, &namesrv).consumer_connections(&group).await?;
            if json {
                println!("{}", json!({ "group": group, "connectionSet": members }));
            } else {
                println!(
                    "{:<3}  {:<40}  {:<22}  {:<12}  #ConsumeType",
                    "#ID", "#ClientId", "#ClientAddr", "#MessageModel"
                );
                for (i, m) in members.iter().enumerate() {
                    let text = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                    let (id, addr, model, kind) =
                        (text("clientId"), text("clientAddr"), text("messageModel"), text("consumeType"));
                    println!("{:<3}  {id:<40}  {addr:<22}  {model:<12}  {kind}", i + 1);
                }
            }
        }
        Cmd::ProducerConnection { namesrv, group, topic } => {
            let members = admin(env, &namesrv).producer_connections(&group, &topic).await?;
            if json {
                println!("{}", json!({ "group": group, "connectionSet": members }));
            } else {
                for (i, m) in members.iter().enumerate() {
                    let text = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                    println!("{:04}  {:<40} {:<22}", i + 1, text("clientId"), text("clientAddr"));
                }
            }
        }
        Cmd::QueryMsgById { namesrv, msg_id, topic } => {
            let q = MessageQuery::new(env, client(&namesrv, "TOOLS_QUERY"));
            for id in msg_id.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                // Unique ids and IPv4 offset ids have the same shape: with a topic, look the id
                // up as a unique id first (an index query), then as an offset id.
                let by_unique = match &topic {
                    Some(t) => q.by_unique_key(t, id).await?,
                    None => None,
                };
                let m = match by_unique {
                    Some(m) => m,
                    None if rmq_proto::message::parse_offset_msg_id(id).is_some() => {
                        q.by_offset_id(id).await.with_context(|| format!("message {id}"))?
                    }
                    None => bail!("no message {id}: not a unique id of the topic given (-t), nor an offset message id"),
                };
                print_detail(&m, json);
            }
        }
        Cmd::QueryMsgByKey { namesrv, topic, key, begin, end, max } => {
            let begin = time_arg(begin.as_deref(), 0)?;
            let end = time_arg(end.as_deref(), i64::MAX)?;
            let q = MessageQuery::new(env, client(&namesrv, "TOOLS_QUERY"));
            let found = q.by_key(&topic, &key, max, begin, end).await?;
            if json {
                let rows: Vec<_> = found.iter().map(message_json).collect();
                println!("{}", json!({ "topic": topic, "key": key, "messages": rows }));
            } else {
                println!("{:<50} {:>4} {:>40}", "#Message ID", "#QID", "#Offset");
                for m in &found {
                    println!("{:<50} {:>4} {:>40}", m.msg_id(), m.queue_id, m.queue_offset);
                }
            }
        }
        Cmd::QueryMsgByUniqueKey { namesrv, msg_id, topic } => {
            let q = MessageQuery::new(env, client(&namesrv, "TOOLS_QUERY"));
            let m = q
                .by_unique_key(&topic, &msg_id)
                .await?
                .with_context(|| format!("no message {msg_id} in topic {topic}"))?;
            print_detail(&m, json);
        }
        Cmd::QueryMsgByOffset { namesrv, topic, broker_name, queue_id, offset } => {
            let consumer = PullConsumer::new(env, client(&namesrv, "TOOLS_QUERY"));
            let mq = rmq_client::MessageQueue { topic: topic.clone(), broker_name, queue_id };
            let r = consumer.pull(&mq, "*", offset, 1, 0).await?;
            let m = r.messages.into_iter().next().with_context(|| {
                format!(
                    "no message at offset {offset} of {topic}/{}/{queue_id} (queue holds {}..{})",
                    mq.broker_name, r.min_offset, r.max_offset
                )
            })?;
            print_detail(&m, json);
        }
        Cmd::PrintMsg { namesrv, topic, charset, sub, begin, end, print_body } => {
            if !charset.eq_ignore_ascii_case("UTF-8") && !charset.eq_ignore_ascii_case("UTF8") {
                bail!("-c {charset}: only UTF-8 bodies are decoded here");
            }
            let begin = time_arg(begin.as_deref(), 0)?;
            let end = time_arg(end.as_deref(), i64::MAX)?;
            print_topic(env, client(&namesrv, "TOOLS_PRINT"), &topic, &sub, begin, end, print_body, json).await?;
        }
        Cmd::ResetOffsetByTime { namesrv, group, topic, timestamp, force } => {
            let ms = if timestamp == "now" { now_ms() } else { time_arg(Some(&timestamp), 0)? };
            let offsets = admin(env, &namesrv).reset_offset(&group, &topic, ms, force).await?;
            print_reset(&group, &topic, force, &timestamp, ms, &offsets, json);
        }
        Cmd::SkipAccumulatedMessage { namesrv, group, topic } => {
            let offsets = admin(env, &namesrv).reset_offset(&group, &topic, -1, true).await?;
            print_reset(&group, &topic, true, "end", -1, &offsets, json);
        }
        Cmd::StatsAll { namesrv, active, topic, interval_ms } => {
            stats_all(admin(env, &namesrv), active, topic, interval_ms, json).await?;
        }
        Cmd::ClusterRt { namesrv, cluster, amount, size, topic } => {
            cluster_rt(
                env,
                &admin(RealEnv::default(), &namesrv),
                client(&namesrv, "TOOLS_RT"),
                cluster,
                amount,
                size,
                topic,
                json,
            )
            .await?;
        }
        Cmd::BrokerConsumeStats { namesrv, broker } => {
            let stats = admin(env, &namesrv).broker_consume_stats(&broker).await?;
            if json {
                println!("{stats}");
            } else {
                println!(
                    "{:<32}  {:<32}  {:<4}  {:<16}  {:<16}  #Diff",
                    "#Topic", "#Group", "#QID", "#Broker Offset", "#Consumer Offset"
                );
                for g in stats["consumeStatsList"].as_array().cloned().unwrap_or_default() {
                    let (topic, group) =
                        (g["topic"].as_str().unwrap_or_default(), g["group"].as_str().unwrap_or_default());
                    for q in g["queues"].as_array().cloned().unwrap_or_default() {
                        let (b, c) =
                            (q["brokerOffset"].as_i64().unwrap_or(0), q["consumerOffset"].as_i64().unwrap_or(0));
                        println!("{topic:<32}  {group:<32}  {:<4}  {b:<16}  {c:<16}  {}", q["queueId"], (b - c).max(0));
                    }
                }
                println!("Diff Total: {}", stats["totalDiff"]);
            }
        }
        Cmd::UpdateOrderConf { namesrv, topic, conf, method } => {
            let admin = admin(env, &namesrv);
            match method.as_str() {
                "put" => {
                    let conf = conf.context("-m put needs -v brokerName:queues;...")?;
                    let valid = conf.split(';').all(|i| {
                        i.split_once(':').is_some_and(|(b, n)| !b.trim().is_empty() && n.trim().parse::<u32>().is_ok())
                    });
                    if !valid {
                        bail!("-v {conf}: expected brokerName:queues;brokerName:queues");
                    }
                    admin.put_kv(ORDER_TOPIC_CONFIG, &topic, &conf).await?;
                    println!("update orderConf success. topic=[{topic}], orderConf=[{conf}]");
                }
                "get" => match admin.get_kv(ORDER_TOPIC_CONFIG, &topic).await? {
                    Some(v) if json => println!("{}", json!({ "topic": topic, "orderConf": v })),
                    Some(v) => println!("get orderConf success. topic=[{topic}], orderConf=[{v}]"),
                    None => bail!("no orderConf for topic {topic}"),
                },
                "delete" => {
                    admin.delete_kv(ORDER_TOPIC_CONFIG, &topic).await?;
                    println!("delete orderConf success. topic=[{topic}]");
                }
                other => bail!("-m {other}: expected put, get or delete"),
            }
        }
        Cmd::SendMessage { namesrv, topic, body, keys, tags, count, group } => {
            send_messages(env, client(&namesrv, &group), &topic, &body, keys, tags, count, json).await?;
        }
        Cmd::ConsumeMessage { namesrv, topic, group, count, idle_ms, sub } => {
            consume_messages(env, client(&namesrv, &group), &topic, count, idle_ms, &sub, json).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn send_messages(
    env: RealEnv,
    config: ClientConfig,
    topic: &str,
    body: &str,
    keys: Option<String>,
    tags: Option<String>,
    count: u64,
    json: bool,
) -> anyhow::Result<()> {
    let producer = Producer::start(env, config);
    let mut failed = 0u64;
    for i in 0..count {
        let text = if count > 1 { format!("{body}-{i}") } else { body.to_string() };
        let mut msg = Message::new(topic, text.into_bytes());
        if let Some(k) = &keys {
            msg = msg.with_keys(k);
        }
        if let Some(t) = &tags {
            msg = msg.with_tags(t);
        }
        match producer.send(msg).await {
            Ok(r) if json => println!(
                "{}",
                json!({ "status": r.status.name(), "msgId": r.msg_id, "offsetMsgId": r.offset_msg_id,
                        "brokerName": r.queue.broker_name, "queueId": r.queue.queue_id, "queueOffset": r.queue_offset })
            ),
            Ok(r) => println!(
                "{:<40} {:<12} {:<5} {} {}",
                r.queue.broker_name, r.queue.queue_id, r.queue_offset, r.status, r.msg_id
            ),
            Err(e) => {
                failed += 1;
                eprintln!("send {i} failed: {e}");
            }
        }
    }
    producer.shutdown().await;
    if failed > 0 {
        bail!("{failed} of {count} sends failed");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn consume_messages(
    env: RealEnv,
    config: ClientConfig,
    topic: &str,
    count: u64,
    idle_ms: u64,
    sub: &str,
    json: bool,
) -> anyhow::Result<()> {
    let consumer = PullConsumer::new(env, config);
    // A topic just created (or auto-created by a send) reaches the NameServer with the broker's
    // next registration: keep asking for its route for up to --idle-ms, as a consumer does.
    let routing = rmq_tools::bench::stopwatch();
    let queues = loop {
        match consumer.fetch_queues(topic).await {
            Ok(q) => break q,
            Err(rmq_client::ClientError::NoRoute { .. }) if routing.elapsed() < Duration::from_millis(idle_ms) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("routing {topic}")),
        }
    };
    let mut offsets = Vec::new();
    for mq in &queues {
        offsets.push(consumer.committed(mq).await?.unwrap_or(0));
    }
    let mut got = 0u64;
    let idle_started = rmq_tools::bench::stopwatch();
    let mut last_progress = idle_started.elapsed();
    while got < count && (idle_started.elapsed() - last_progress) < Duration::from_millis(idle_ms) {
        let mut progressed = false;
        for (i, mq) in queues.iter().enumerate() {
            if got >= count {
                break;
            }
            let want = (count - got).min(32) as i32;
            let r = consumer.pull(mq, sub, offsets[i], want, 0).await?;
            if r.status == PullStatus::Found {
                for m in &r.messages {
                    print_message(m, json);
                }
                got += r.messages.len() as u64;
                progressed = true;
            }
            if r.next_begin_offset != offsets[i] {
                offsets[i] = r.next_begin_offset;
                consumer.commit(mq, offsets[i]).await?;
            }
        }
        if progressed {
            last_progress = idle_started.elapsed();
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if !json {
        println!("Consumed {got} messages");
    }
    Ok(())
}

fn print_message(m: &rmq_client::MessageExt, json: bool) {
    let body = String::from_utf8_lossy(&m.body);
    if json {
        println!(
            "{}",
            json!({ "topic": m.topic, "queueId": m.queue_id, "queueOffset": m.queue_offset, "msgId": m.msg_id(),
                    "tags": m.tags(), "keys": m.properties.get("KEYS"), "body": body, "reconsumeTimes": m.reconsume_times })
        );
    } else {
        println!(
            "MSG: topic={} queueId={} queueOffset={} msgId={} body={}",
            m.topic,
            m.queue_id,
            m.queue_offset,
            m.msg_id(),
            body
        );
    }
}

/// Wall-clock now, from the runtime facade.
fn now_ms() -> i64 {
    rmq_rt::Env::now_ms(&RealEnv::default()) as i64
}

/// A time flag: epoch ms or yyyy-MM-dd#HH:mm:ss:SSS (UTC); `default` when absent.
fn time_arg(v: Option<&str>, default: i64) -> anyhow::Result<i64> {
    match v {
        None => Ok(default),
        Some(s) => rmq_tools::clock::parse_time_ms(s)
            .with_context(|| format!("{s}: expected epoch milliseconds or yyyy-MM-dd#HH:mm:ss:SSS")),
    }
}

fn message_json(m: &rmq_client::MessageExt) -> serde_json::Value {
    json!({
        "msgId": m.msg_id(),
        "offsetMsgId": rmq_proto::message::offset_msg_id(m.store_host, m.commit_log_offset),
        "topic": m.topic, "tags": m.tags(), "keys": m.properties.get("KEYS"),
        "queueId": m.queue_id, "queueOffset": m.queue_offset, "commitLogOffset": m.commit_log_offset,
        "reconsumeTimes": m.reconsume_times, "bornTimestamp": m.born_timestamp, "storeTimestamp": m.store_timestamp,
        "bornHost": m.born_host.to_string(), "storeHost": m.store_host.to_string(), "sysFlag": m.sys_flag,
        "properties": m.properties, "body": String::from_utf8_lossy(&m.body),
    })
}

/// One message in full, as RocketMQ's queryMsgById prints it (the body inline).
fn print_detail(m: &rmq_client::MessageExt, json: bool) {
    if json {
        println!("{}", message_json(m));
        return;
    }
    let offset_id = rmq_proto::message::offset_msg_id(m.store_host, m.commit_log_offset);
    let props: Vec<String> = m.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for (k, v) in [
        ("OffsetID:", offset_id),
        ("Topic:", m.topic.clone()),
        ("Tags:", format!("[{}]", m.tags().unwrap_or_default())),
        ("Keys:", format!("[{}]", m.properties.get("KEYS").map(String::as_str).unwrap_or_default())),
        ("Queue ID:", m.queue_id.to_string()),
        ("Queue Offset:", m.queue_offset.to_string()),
        ("CommitLog Offset:", m.commit_log_offset.to_string()),
        ("Reconsume Times:", m.reconsume_times.to_string()),
        ("Born Timestamp:", rmq_tools::clock::format_ms(m.born_timestamp)),
        ("Store Timestamp:", rmq_tools::clock::format_ms(m.store_timestamp)),
        ("Born Host:", m.born_host.to_string()),
        ("Store Host:", m.store_host.to_string()),
        ("System Flag:", m.sys_flag.to_string()),
        ("Properties:", format!("{{{}}}", props.join(", "))),
        ("Message Body:", String::from_utf8_lossy(&m.body).into_owned()),
    ] {
        println!("{k:<20} {v}");
    }
}

fn print_reset(
    group: &str,
    topic: &str,
    force: bool,
    given: &str,
    ms: i64,
    offsets: &[(rmq_client::MessageQueue, i64)],
    json: bool,
) {
    if json {
        let rows: Vec<_> = offsets
            .iter()
            .map(|(q, o)| json!({ "brokerName": q.broker_name, "queueId": q.queue_id, "offset": o }))
            .collect();
        println!("{}", json!({ "group": group, "topic": topic, "force": force, "timestamp": ms, "offsets": rows }));
        return;
    }
    println!(
        "rollback consumer offset by specified group[{group}], topic[{topic}], force[{force}], timestamp(string)[{given}], timestamp(long)[{ms}]"
    );
    println!("{:<40}  {:<40}  #offset", "#brokerName", "#queueId");
    for (q, o) in offsets {
        println!("{:<40}  {:<40}  {o}", q.broker_name, q.queue_id);
    }
}

/// printMsg: every message of every queue stored within `[begin, end]`, pulled without a group.
#[allow(clippy::too_many_arguments)]
async fn print_topic(
    env: RealEnv,
    config: ClientConfig,
    topic: &str,
    sub: &str,
    begin: i64,
    end: i64,
    print_body: bool,
    json: bool,
) -> anyhow::Result<()> {
    let consumer = PullConsumer::new(env, config);
    let mut total = 0u64;
    for mq in consumer.fetch_queues(topic).await? {
        let (min, max) = (consumer.min_offset(&mq).await?, consumer.max_offset(&mq).await?);
        if !json {
            println!("minOffset={min}, maxOffset={max}, {mq:?}");
        }
        let mut offset = min;
        while offset < max {
            let r = consumer.pull(&mq, sub, offset, 32, 0).await?;
            for m in r.messages.iter().filter(|m| (begin..=end).contains(&m.store_timestamp)) {
                total += 1;
                if json {
                    println!("{}", message_json(m));
                } else if print_body {
                    println!("MSGID: {} {m:?} BODY: {}", m.msg_id(), String::from_utf8_lossy(&m.body));
                } else {
                    println!("MSGID: {} {m:?}", m.msg_id());
                }
            }
            if r.next_begin_offset <= offset {
                break;
            }
            offset = r.next_begin_offset;
        }
    }
    if !json {
        println!("Printed {total} messages");
    }
    Ok(())
}

/// statsAll: per topic and group, the backlog and rates from two readings `interval_ms` apart.
async fn stats_all(
    admin: Admin<RealEnv>,
    active_only: bool,
    only: Option<String>,
    interval_ms: u64,
    json: bool,
) -> anyhow::Result<()> {
    let topics: Vec<String> = match only {
        Some(t) => vec![t],
        None => admin.topic_list().await?.into_iter().filter(|t| !is_system_topic(t)).collect(),
    };
    let masters = admin.masters(None).await?;
    // (topic, group) → backlog, from every master's consume stats.
    let mut groups: std::collections::BTreeMap<(String, String), i64> = std::collections::BTreeMap::new();
    for b in &masters {
        let stats = admin.broker_consume_stats(b).await?;
        for g in stats["consumeStatsList"].as_array().cloned().unwrap_or_default() {
            let key = (
                g["topic"].as_str().unwrap_or_default().to_string(),
                g["group"].as_str().unwrap_or_default().to_string(),
            );
            *groups.entry(key).or_insert(0) += g["diff"].as_i64().unwrap_or(0);
        }
    }
    let read = |topic: String, group: Option<String>| {
        let (admin, masters) = (&admin, &masters);
        async move {
            let mut total = 0;
            for b in masters {
                total += match &group {
                    None => admin.stats_total(b, "TOPIC_PUT_NUMS", &topic).await?,
                    Some(g) => admin.stats_total(b, "GROUP_GET_NUMS", &format!("{topic}@{g}")).await?,
                };
            }
            anyhow::Ok(total)
        }
    };
    let mut first = Vec::new();
    for t in &topics {
        first.push(read(t.clone(), None).await?);
    }
    let mut first_groups = Vec::new();
    for (t, g) in groups.keys() {
        first_groups.push(read(t.clone(), Some(g.clone())).await?);
    }
    tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    let secs = interval_ms.max(1) as f64 / 1000.0;
    if !json {
        println!(
            "{:<32}  {:<32}  {:>12}  {:>11}  {:>11}  {:>14}  {:>14}",
            "#Topic", "#Consumer Group", "#Accumulation", "#InTPS", "#OutTPS", "#InMsgTotal", "#OutMsgTotal"
        );
    }
    let mut rows = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        let in_total = read(t.clone(), None).await?;
        let in_tps = (in_total - first[i]) as f64 / secs;
        if active_only && in_total == 0 {
            continue;
        }
        let mine: Vec<(usize, &(String, String))> = groups.keys().enumerate().filter(|(_, (tt, _))| tt == t).collect();
        if mine.is_empty() {
            rows.push(json!({ "topic": t, "inTps": in_tps, "inMsgTotal": in_total }));
            if !json {
                println!("{t:<32}  {:<32}  {:>12}  {in_tps:>11.2}  {:>11}  {in_total:>14}  {:>14}", "", "", "", "");
            }
        }
        for (j, (_, g)) in mine {
            let out_total = read(t.clone(), Some(g.clone())).await?;
            let out_tps = (out_total - first_groups[j]) as f64 / secs;
            let backlog = groups[&(t.clone(), g.clone())];
            rows.push(json!({ "topic": t, "group": g, "accumulation": backlog, "inTps": in_tps, "outTps": out_tps,
                              "inMsgTotal": in_total, "outMsgTotal": out_total }));
            if !json {
                println!(
                    "{t:<32}  {g:<32}  {backlog:>12}  {in_tps:>11.2}  {out_tps:>11.2}  {in_total:>14}  {out_total:>14}"
                );
            }
        }
    }
    if json {
        println!("{}", json!({ "intervalMs": interval_ms, "stats": rows }));
    }
    Ok(())
}

/// clusterRT: `amount` sends of `size` bytes to a queue of each master, one at a time.
#[allow(clippy::too_many_arguments)]
async fn cluster_rt(
    env: RealEnv,
    admin: &Admin<RealEnv>,
    config: ClientConfig,
    cluster: Option<String>,
    amount: u32,
    size: usize,
    topic: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let info = admin.cluster_info().await?;
    let producer = Producer::start(env, config);
    if !json {
        println!(
            "{:<24}  {:<24}  {:>10}  {:>14}  {:>11}",
            "#Cluster Name", "#Broker Name", "#RT(ms)", "#successCount", "#failCount"
        );
    }
    let mut rows = Vec::new();
    for (c, names) in &info.cluster_addr_table {
        if cluster.as_ref().is_some_and(|want| want != c) {
            continue;
        }
        let topic = topic.clone().unwrap_or_else(|| c.clone());
        for name in names {
            let mq = rmq_client::MessageQueue { topic: topic.clone(), broker_name: name.clone(), queue_id: 0 };
            let (mut ok, mut failed, mut total_ms) = (0u32, 0u32, 0f64);
            for _ in 0..amount {
                let started = rmq_tools::bench::stopwatch();
                match producer.send_to(Message::new(&topic, vec![b'x'; size]), mq.clone()).await {
                    Ok(_) => {
                        ok += 1;
                        total_ms += started.elapsed().as_secs_f64() * 1000.0;
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::debug!(broker = %name, error = %e, "clusterRT send failed");
                    }
                }
            }
            let rt = if ok > 0 { total_ms / f64::from(ok) } else { 0.0 };
            rows.push(json!({ "cluster": c, "brokerName": name, "rtMs": rt, "successCount": ok, "failCount": failed }));
            if !json {
                println!("{c:<24}  {name:<24}  {rt:>10.3}  {ok:>14}  {failed:>11}");
            }
        }
    }
    producer.shutdown().await;
    if json {
        println!("{}", json!({ "rt": rows }));
    }
    Ok(())
}

/// Topics the brokers keep for themselves (statsAll skips them, as RocketMQ's does).
fn is_system_topic(t: &str) -> bool {
    ["TBW102", "SCHEDULE_TOPIC_XXXX", "TRANS_CHECK_MAX_TIME_TOPIC", "OFFSET_MOVED_EVENT"].contains(&t)
        || ["RMQ_SYS_", "%RETRY%", "%DLQ%"].iter().any(|p| t.starts_with(p))
}
