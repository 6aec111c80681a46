//! Broker statistics (RocketMQ's BrokerStatsManager, the figures operators read): messages
//! and bytes put and got, per topic and per (group, topic), and rates over the last 10 s,
//! 1 min and 10 min, from one sample per second.

use std::collections::{BTreeMap, VecDeque};

use rmq_proto::names::NameMap;

/// Samples kept: ten minutes at one a second.
const SAMPLES_MAX: usize = 601;
/// Sampling period.
const SAMPLE_EVERY_MS: u64 = 1_000;

/// Counters since the broker started, and their recent samples.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Stats {
    /// Messages stored.
    pub put_msgs: u64,
    /// Bytes stored (encoded records).
    pub put_bytes: u64,
    /// Messages handed to consumers by pulls.
    pub get_msgs: u64,
    /// Bytes handed to consumers by pulls.
    pub get_bytes: u64,
    /// Messages stored per topic (counted on every put: hashed, see [`NameMap`]).
    pub topic_puts: NameMap<u64>,
    /// Messages pulled per (group, topic).
    pub group_gets: BTreeMap<(String, String), u64>,
    /// (time, put_msgs, get_msgs), oldest first.
    samples: VecDeque<(u64, u64, u64)>,
}

/// Rates in messages per second over the last 10 s, 1 min and 10 min (RocketMQ prints
/// `putTps` as these three numbers).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Puts per second.
    pub put: [f64; 3],
    /// Gets per second.
    pub get: [f64; 3],
}

impl Stats {
    pub(crate) fn on_put(&mut self, topic: &str, bytes: u64) {
        self.put_msgs += 1;
        self.put_bytes += bytes;
        *self.topic_puts.get_or_insert_with(topic, || 0) += 1;
    }

    pub(crate) fn on_get(&mut self, group: &str, topic: &str, msgs: u64, bytes: u64) {
        self.get_msgs += msgs;
        self.get_bytes += bytes;
        *self.group_gets.entry((group.to_string(), topic.to_string())).or_insert(0) += msgs;
    }

    /// Takes a sample if a second passed since the last one.
    pub(crate) fn sample(&mut self, now_ms: u64) {
        if self.samples.back().is_some_and(|(t, _, _)| now_ms < t + SAMPLE_EVERY_MS) {
            return;
        }
        self.samples.push_back((now_ms, self.put_msgs, self.get_msgs));
        while self.samples.len() > SAMPLES_MAX {
            self.samples.pop_front();
        }
    }

    /// Rates up to `now_ms`, against the oldest sample inside each window (0 with no sample
    /// old enough to measure against).
    pub fn rates(&self, now_ms: u64) -> Rates {
        let mut r = Rates::default();
        for (i, window_ms) in [10_000u64, 60_000, 600_000].into_iter().enumerate() {
            let from = self.samples.iter().find(|(t, _, _)| now_ms.saturating_sub(*t) <= window_ms);
            if let Some((t, put, get)) = from.filter(|(t, _, _)| *t < now_ms) {
                let secs = (now_ms - t) as f64 / 1000.0;
                r.put[i] = (self.put_msgs - put) as f64 / secs;
                r.get[i] = (self.get_msgs - get) as f64 / secs;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_the_samples() {
        let mut s = Stats::default();
        s.sample(0);
        for t in 1..=20u64 {
            for _ in 0..100 {
                s.on_put("T", 10);
            }
            s.on_get("G", "T", 50, 500);
            s.sample(t * 1_000);
        }
        let r = s.rates(20_000);
        assert_eq!((r.put[0], r.get[0]), (100.0, 50.0), "10 s window");
        assert_eq!((r.put[1], r.get[1]), (100.0, 50.0), "since the first sample");
        assert_eq!(
            (s.put_msgs, s.put_bytes, s.topic_puts["T"], s.group_gets[&("G".into(), "T".into())]),
            (2000, 20_000, 2000, 1000)
        );
        assert_eq!(Stats::default().rates(5_000), Rates::default(), "nothing to measure against");
    }
}

/// What a broker reports about itself (GET_BROKER_RUNTIME_INFO, `mqadmin brokerStatus`, the
/// metrics endpoint).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Runtime {
    /// brokerName.
    pub broker_name: String,
    /// brokerRole as broker.conf spells it.
    pub broker_role: String,
    /// flushDiskType as broker.conf spells it.
    pub flush_disk_type: String,
    /// Counters and per-topic, per-group figures.
    pub stats: Stats,
    /// Put and get rates.
    pub rates: Rates,
    /// Smallest CommitLog offset held (moves with retention).
    pub commit_log_min_offset: u64,
    /// CommitLog write position.
    pub commit_log_max_offset: u64,
    /// Durable CommitLog position.
    pub commit_log_flushed_offset: u64,
    /// CommitLog bytes not yet in the ConsumeQueues (a slave's dispatch lag).
    pub dispatch_behind_bytes: u64,
    /// The share of the store's disk in use, if measurable.
    pub disk_ratio: Option<f64>,
    /// Sends refused for a full disk.
    pub disk_full: bool,
    /// Master: the highest offset a slave confirmed.
    pub slave_acked_offset: Option<u64>,
    /// Topics and queues.
    pub topics: usize,
    /// ConsumeQueues.
    pub queues: usize,
    /// Consumer groups with a member connected.
    pub consumer_groups: usize,
    /// Why the last checkpoint failed, if it did.
    pub last_checkpoint_error: Option<String>,
    /// Why the last message could not be indexed by key, if one could not.
    pub index_error: Option<String>,
}

impl Runtime {
    /// The GET_BROKER_RUNTIME_INFO table, with RocketMQ's key names where it has them.
    pub fn table(&self) -> BTreeMap<&'static str, String> {
        let three = |r: [f64; 3]| format!("{:.2} {:.2} {:.2}", r[0], r[1], r[2]);
        let mut t = BTreeMap::new();
        t.insert("brokerName", self.broker_name.clone());
        t.insert("brokerRole", self.broker_role.clone());
        t.insert("flushDiskType", self.flush_disk_type.clone());
        t.insert("putTps", three(self.rates.put));
        t.insert("getTransferedTps", three(self.rates.get));
        t.insert("msgPutTotal", self.stats.put_msgs.to_string());
        t.insert("msgGetTotal", self.stats.get_msgs.to_string());
        t.insert("msgPutBytesTotal", self.stats.put_bytes.to_string());
        t.insert("commitLogMinOffset", self.commit_log_min_offset.to_string());
        t.insert("commitLogMaxOffset", self.commit_log_max_offset.to_string());
        t.insert("commitLogFlushedOffset", self.commit_log_flushed_offset.to_string());
        t.insert("remainHowManyDataToFlush", (self.commit_log_max_offset - self.commit_log_flushed_offset).to_string());
        t.insert("dispatchBehindBytes", self.dispatch_behind_bytes.to_string());
        t.insert("commitLogDiskRatio", self.disk_ratio.map_or("-".into(), |r| format!("{r:.4}")));
        t.insert("diskFull", self.disk_full.to_string());
        t.insert("slaveAckOffset", self.slave_acked_offset.map_or("-".into(), |o| o.to_string()));
        t.insert("topicCount", self.topics.to_string());
        t.insert("queueCount", self.queues.to_string());
        t.insert("consumerGroupCount", self.consumer_groups.to_string());
        t.insert("lastCheckpointError", self.last_checkpoint_error.clone().unwrap_or_default());
        t.insert("indexError", self.index_error.clone().unwrap_or_default());
        t
    }
}
