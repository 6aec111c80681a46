//! Client configuration, in code, from a properties file or from the environment.
//!
//! Keys follow the Spring Boot starter: `rocketmq.name-server`, `rocketmq.producer.group`,
//! `rocketmq.consumer.group`, `rocketmq.producer.send-message-timeout`,
//! `rocketmq.producer.retry-times-when-send-failed`. Environment: `ROCKETMQ_NAME_SERVER` (or
//! `NAMESRV_ADDR`), `ROCKETMQ_PRODUCER_GROUP`, `ROCKETMQ_CONSUMER_GROUP`.
//!
//! Broadcasting offsets: `rocketmq.consumer.local-offset-store-dir` or
//! `ROCKETMQ_LOCAL_OFFSET_STORE_DIR` (default `$HOME/.rocketmq_offsets`).
//!
//! ACL credentials: `rocketmq.<role>.access-key` + `rocketmq.<role>.secret-key` (the starter's
//! keys), or `ROCKETMQ_ACCESS_KEY` + `ROCKETMQ_SECRET_KEY`; one without the other is an error.

use std::collections::BTreeMap;

use rmq_acl::Credentials;

use crate::ClientError;

/// CLUSTERING or BROADCASTING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageModel {
    /// Each message goes to one member of the group.
    Clustering,
    /// Each member gets every message.
    Broadcasting,
}

impl MessageModel {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsumeFromWhere {
    /// At the end (new messages only) unless the queue is brand new.
    LastOffset,
    /// At the beginning.
    FirstOffset,
}

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientConfig {
    /// NameServer addresses.
    pub namesrv_addrs: Vec<String>,
    /// Producer or consumer group.
    pub group: String,
    /// Instance name (client id = client_ip@instance_name).
    pub instance_name: Option<String>,
    /// IP this client reports.
    pub client_ip: String,
    /// Total time a send may take, retries included.
    pub send_timeout_ms: u64,
    /// Retries after the first attempt (sync and async sends).
    pub retry_times_when_send_failed: u32,
    /// How often routes are refreshed.
    pub poll_namesrv_interval_ms: u64,
    /// How often heartbeats go to brokers.
    pub heartbeat_interval_ms: u64,
    /// How often consumer offsets are committed.
    pub persist_offset_interval_ms: u64,
    /// How often consumers rebalance without a notification.
    pub rebalance_interval_ms: u64,
    /// Messages per pull.
    pub pull_batch_size: i32,
    /// Longest hold asked of the broker for a pull.
    pub pull_suspend_ms: u64,
    /// Messages per listener call.
    pub consume_batch_max: usize,
    /// Retries before a message goes to the DLQ.
    pub max_reconsume_times: i32,
    /// Orderly consumers: how long a queue pauses after a failed message before it is
    /// consumed again (RocketMQ's suspendCurrentQueueTimeMillis).
    pub suspend_current_queue_ms: u64,
    /// Orderly consumers: how often the queue locks are renewed at the brokers (RocketMQ's
    /// `rocketmq.client.rebalance.lockInterval`, 20 s). Keep it well under the brokers'
    /// `rebalanceLockMaxLiveTime`.
    pub rebalance_lock_interval_ms: u64,
    /// Orderly consumers: how long an unrenewed lock is trusted here (RocketMQ's
    /// `rocketmq.client.rebalance.lockMaxLiveTime`, 30 s); keep it under the brokers' expiry.
    pub rebalance_lock_max_live_ms: u64,
    /// CLUSTERING or BROADCASTING.
    pub message_model: MessageModel,
    /// Start position for a new group.
    pub consume_from_where: ConsumeFromWhere,
    /// ACL account every request is signed with; `None`: requests are not signed.
    pub credentials: Option<Credentials>,
    /// Where BROADCASTING consumers keep their offsets (RocketMQ's `localOffsetStoreDir`);
    /// `None`: `$HOME/.rocketmq_offsets`. See [`crate::offset_store`].
    pub local_offset_store_dir: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            group: "DEFAULT_PRODUCER".into(),
            instance_name: None,
            client_ip: "127.0.0.1".into(),
            send_timeout_ms: 3_000,
            retry_times_when_send_failed: rmq_client_core::retry::RETRY_TIMES_WHEN_SEND_FAILED,
            poll_namesrv_interval_ms: 30_000,
            heartbeat_interval_ms: 30_000,
            persist_offset_interval_ms: 5_000,
            rebalance_interval_ms: 20_000,
            pull_batch_size: 32,
            pull_suspend_ms: 15_000,
            consume_batch_max: 1,
            max_reconsume_times: 16,
            suspend_current_queue_ms: 1_000,
            rebalance_lock_interval_ms: 20_000,
            rebalance_lock_max_live_ms: 30_000,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            credentials: None,
            local_offset_store_dir: None,
        }
    }
}

fn split(s: &str) -> Vec<String> {
    s.split([';', ',']).map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect()
}

impl ClientConfig {
    /// A config for `group` talking to `namesrv` (`host:port;host:port`).
    pub fn new(namesrv: &str, group: &str) -> Self {
        ClientConfig { namesrv_addrs: split(namesrv), group: group.into(), ..Default::default() }
    }

    /// This config, signing every request with `credentials`.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Applies Spring-Boot-style properties; `role` is "producer" or "consumer".
    pub fn from_properties(props: &BTreeMap<String, String>, role: &str) -> Result<Self, ClientError> {
        let mut c = ClientConfig::default();
        let num = |k: &str| -> Result<Option<u64>, ClientError> {
            props
                .get(k)
                .map(|v| v.parse::<u64>().map_err(|_| ClientError::Config(format!("{k}={v} is not a number"))))
                .transpose()
        };
        match props.get("rocketmq.name-server") {
            Some(ns) => c.namesrv_addrs = split(ns),
            None => return Err(ClientError::Config("rocketmq.name-server is required".into())),
        }
        if let Some(g) = props.get(&format!("rocketmq.{role}.group")) {
            c.group = g.clone();
        }
        if let Some(ms) = num(&format!("rocketmq.{role}.send-message-timeout"))? {
            c.send_timeout_ms = ms;
        }
        if let Some(n) = num(&format!("rocketmq.{role}.retry-times-when-send-failed"))? {
            c.retry_times_when_send_failed = n as u32;
        }
        if let Some(n) = num(&format!("rocketmq.{role}.pull-batch-size"))? {
            c.pull_batch_size = n.clamp(1, 1024) as i32;
        }
        if let Some(m) = props.get(&format!("rocketmq.{role}.message-model")) {
            c.message_model = match m.as_str() {
                "CLUSTERING" => MessageModel::Clustering,
                "BROADCASTING" => MessageModel::Broadcasting,
                other => {
                    return Err(ClientError::Config(format!("message-model {other} is not CLUSTERING or BROADCASTING")))
                }
            };
        }
        if let Some(d) = props.get(&format!("rocketmq.{role}.local-offset-store-dir")) {
            if role != "consumer" {
                return Err(ClientError::Config(format!(
                    "rocketmq.{role}.local-offset-store-dir: only BROADCASTING consumers keep local offsets"
                )));
            }
            c.local_offset_store_dir = Some(d.into());
        }
        let (ak, sk) = (format!("rocketmq.{role}.access-key"), format!("rocketmq.{role}.secret-key"));
        c.credentials = credentials(props.get(&ak).map(String::as_str), props.get(&sk).map(String::as_str), &ak, &sk)?;
        Ok(c)
    }

    /// Reads a properties file (`key=value` lines).
    pub fn from_file(path: &std::path::Path, role: &str) -> Result<Self, ClientError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
        let props = rmq_rt::conf::parse_properties(&text).map_err(|e| ClientError::Config(e.to_string()))?;
        Self::from_properties(&props, role)
    }

    /// Reads `ROCKETMQ_NAME_SERVER` (or `NAMESRV_ADDR`), `ROCKETMQ_<ROLE>_GROUP`, the ACL keys
    /// and `ROCKETMQ_LOCAL_OFFSET_STORE_DIR`.
    pub fn from_env(role: &str) -> Result<Self, ClientError> {
        let mut props = BTreeMap::new();
        if let Ok(v) = std::env::var("ROCKETMQ_NAME_SERVER").or_else(|_| std::env::var("NAMESRV_ADDR")) {
            props.insert("rocketmq.name-server".to_string(), v);
        }
        if let Ok(v) = std::env::var(format!("ROCKETMQ_{}_GROUP", role.to_uppercase())) {
            props.insert(format!("rocketmq.{role}.group"), v);
        }
        for (var, key) in [
            ("ROCKETMQ_ACCESS_KEY", "access-key"),
            ("ROCKETMQ_SECRET_KEY", "secret-key"),
            ("ROCKETMQ_LOCAL_OFFSET_STORE_DIR", "local-offset-store-dir"),
        ] {
            if let Ok(v) = std::env::var(var) {
                props.insert(format!("rocketmq.{role}.{key}"), v);
            }
        }
        Self::from_properties(&props, role)
    }
}

/// Credentials from an access key and a secret key given together (or neither); `ak_name` and
/// `sk_name` name them in errors (a property, an environment variable or a flag).
pub fn credentials(
    access_key: Option<&str>,
    secret_key: Option<&str>,
    ak_name: &str,
    sk_name: &str,
) -> Result<Option<Credentials>, ClientError> {
    match (access_key.map(str::trim), secret_key.map(str::trim)) {
        (None, None) => Ok(None),
        (Some(ak), Some(sk)) if !ak.is_empty() && !sk.is_empty() => Ok(Some(Credentials::new(ak, sk))),
        (Some(_), Some(_)) => Err(ClientError::Config(format!("{ak_name} and {sk_name} must not be empty"))),
        (Some(_), None) => Err(ClientError::Config(format!("{ak_name} is set without {sk_name}"))),
        (None, Some(_)) => Err(ClientError::Config(format!("{sk_name} is set without {ak_name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_style_properties() {
        let text = "rocketmq.name-server=127.0.0.1:9876;127.0.0.1:9877\nrocketmq.producer.group=orders\nrocketmq.producer.send-message-timeout=5000\n";
        let props = rmq_rt::conf::parse_properties(text).unwrap();
        let c = ClientConfig::from_properties(&props, "producer").unwrap();
        assert_eq!(c.namesrv_addrs.len(), 2);
        assert_eq!(c.group, "orders");
        assert_eq!(c.send_timeout_ms, 5000);
        assert!(ClientConfig::from_properties(&BTreeMap::new(), "producer").is_err());
        assert!(c.credentials.is_none());
    }

    #[test]
    fn the_local_offset_store_is_a_consumer_setting() {
        let text = "rocketmq.name-server=127.0.0.1:9876\nrocketmq.consumer.local-offset-store-dir=/tmp/o\n";
        let props = rmq_rt::conf::parse_properties(text).unwrap();
        let c = ClientConfig::from_properties(&props, "consumer").unwrap();
        assert_eq!(c.local_offset_store_dir, Some("/tmp/o".into()));
        let text = "rocketmq.name-server=127.0.0.1:9876\nrocketmq.producer.local-offset-store-dir=/tmp/o\n";
        let props = rmq_rt::conf::parse_properties(text).unwrap();
        let err = ClientConfig::from_properties(&props, "producer").unwrap_err().to_string();
        assert!(err.contains("rocketmq.producer.local-offset-store-dir"), "{err}");
    }

    #[test]
    fn credentials_come_in_pairs() {
        let text = "rocketmq.name-server=127.0.0.1:9876\nrocketmq.consumer.access-key=consumer1\nrocketmq.consumer.secret-key=consumer-secret\n";
        let props = rmq_rt::conf::parse_properties(text).unwrap();
        let c = ClientConfig::from_properties(&props, "consumer").unwrap();
        assert_eq!(c.credentials, Some(Credentials::new("consumer1", "consumer-secret")));
        let text = "rocketmq.name-server=127.0.0.1:9876\nrocketmq.producer.access-key=producer1\n";
        let props = rmq_rt::conf::parse_properties(text).unwrap();
        let err = ClientConfig::from_properties(&props, "producer").unwrap_err().to_string();
        assert!(err.contains("rocketmq.producer.access-key is set without rocketmq.producer.secret-key"), "{err}");
    }
}
