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
//! mqadmin updateTopic -n 127.0.0.1:9876 -t Orders --access-key admin-ak --secret-key admin-sk
//! ```
//!
//! Against servers with `aclEnable=true`, every request is signed with `--access-key` and
//! `--secret-key` (or `ROCKETMQ_ACCESS_KEY` and `ROCKETMQ_SECRET_KEY`).

/// mimalloc: the broker's per-request allocations cost a third of its CPU under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rmq_client::{ClientConfig, Message, Producer, PullConsumer, PullStatus};
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
