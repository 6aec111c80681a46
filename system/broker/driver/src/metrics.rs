//! The broker's Prometheus metrics (`metricsExporterType=PROM`): a fresh registry per scrape,
//! filled from the node loop's latest [`Runtime`] snapshot and encoded by `prometheus-client`.
//! Names follow RocketMQ 5's exporter where it has one (`rocketmq_messages_in_total`, ...).

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rmq_broker_core::stats::Runtime;

type Labels = Vec<(&'static str, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    registry.register(name, help, g);
}

/// The exposition text of one snapshot.
pub fn render(r: &Runtime) -> String {
    let labels = [
        (Cow::Borrowed("broker"), Cow::Owned(r.broker_name.clone())),
        (Cow::Borrowed("role"), Cow::Owned(r.broker_role.clone())),
    ];
    let mut registry = Registry::with_labels(labels.into_iter());
    let messages_in = Family::<Labels, Counter>::default();
    for (topic, n) in r.stats.topic_puts.iter() {
        messages_in.get_or_create(&vec![("topic", topic.clone())]).inc_by(*n);
    }
    registry.register("rocketmq_messages_in", "Messages stored, per topic", messages_in);
    let messages_out = Family::<Labels, Counter>::default();
    for ((group, topic), n) in &r.stats.group_gets {
        messages_out.get_or_create(&vec![("topic", topic.clone()), ("consumer_group", group.clone())]).inc_by(*n);
    }
    registry.register("rocketmq_messages_out", "Messages pulled by consumers, per topic and group", messages_out);
    let bytes_in = Counter::<u64>::default();
    bytes_in.inc_by(r.stats.put_bytes);
    registry.register("rocketmq_throughput_in", "Bytes stored", bytes_in);
    let bytes_out = Counter::<u64>::default();
    bytes_out.inc_by(r.stats.get_bytes);
    registry.register("rocketmq_throughput_out", "Bytes pulled by consumers", bytes_out);
    for (name, help, rates) in [
        ("rocketmq_put_tps", "Messages stored per second, over the window", r.rates.put),
        ("rocketmq_get_tps", "Messages pulled per second, over the window", r.rates.get),
    ] {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (window, v) in ["10s", "1m", "10m"].into_iter().zip(rates) {
            family.get_or_create(&vec![("window", window.to_string())]).set(v);
        }
        registry.register(name, help, family);
    }
    gauge(
        &mut registry,
        "rocketmq_commitlog_min_offset",
        "Smallest CommitLog offset held",
        r.commit_log_min_offset as f64,
    );
    gauge(&mut registry, "rocketmq_commitlog_max_offset", "CommitLog write position", r.commit_log_max_offset as f64);
    let flushed = r.commit_log_flushed_offset as f64;
    gauge(&mut registry, "rocketmq_commitlog_flushed_offset", "Durable CommitLog position", flushed);
    let behind = r.dispatch_behind_bytes as f64;
    gauge(&mut registry, "rocketmq_dispatch_behind_bytes", "CommitLog bytes not yet in the ConsumeQueues", behind);
    if let Some(ratio) = r.disk_ratio {
        gauge(&mut registry, "rocketmq_disk_used_ratio", "Share of the store's disk in use", ratio);
    }
    gauge(
        &mut registry,
        "rocketmq_disk_full",
        "1 while sends are refused for a full disk",
        f64::from(u8::from(r.disk_full)),
    );
    if let Some(acked) = r.slave_acked_offset {
        gauge(&mut registry, "rocketmq_slave_ack_offset", "Highest CommitLog offset a slave confirmed", acked as f64);
    }
    gauge(&mut registry, "rocketmq_topics", "Topics", r.topics as f64);
    gauge(&mut registry, "rocketmq_queues", "ConsumeQueues", r.queues as f64);
    gauge(
        &mut registry,
        "rocketmq_consumer_groups",
        "Consumer groups with a member connected",
        r.consumer_groups as f64,
    );
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_as_prometheus_text() {
        let mut r = Runtime { broker_name: "b".into(), broker_role: "ASYNC_MASTER".into(), ..Runtime::default() };
        r.stats.topic_puts.insert("T".into(), 7);
        r.stats.group_gets.insert(("G".into(), "T".into()), 3);
        r.rates.put = [1.5, 2.0, 0.0];
        let text = render(&r);
        for line in [
            r#"rocketmq_messages_in_total{broker="b",role="ASYNC_MASTER",topic="T"} 7"#,
            r#"rocketmq_messages_out_total{broker="b",role="ASYNC_MASTER",topic="T",consumer_group="G"} 3"#,
            r#"rocketmq_put_tps{broker="b",role="ASYNC_MASTER",window="10s"} 1.5"#,
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
