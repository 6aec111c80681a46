//! Admin requests: topics, subscription groups, broker settings and status, connections,
//! offsets (progress and resets), statistics, NameServer KV config.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use rmq_proto::body::{from_json, ClusterInfo, ConsumeStats, MessageQueue, ResetOffsetBody, TopicList, TopicRouteData};
use rmq_proto::codes::{perm, RequestCode};
use rmq_proto::header::{ConsumeStatsRequestHeader, CreateTopicRequestHeader, ResetOffsetRequestHeader};
use rmq_proto::RemotingCommand;
use rmq_rt::{Env, RemotingClient};

/// Timeout of one admin RPC.
pub const ADMIN_TIMEOUT_MS: u64 = 5_000;

/// Talks to NameServers and brokers for `mqadmin`.
#[derive(Debug, Clone)]
pub struct Admin<E: Env> {
    rpc: RemotingClient<E>,
    namesrv: Vec<String>,
}

impl<E: Env> Admin<E> {
    /// An admin client for these NameServers.
    pub fn new(env: E, namesrv: Vec<String>) -> Self {
        Admin { rpc: RemotingClient::new(env), namesrv }
    }

    /// This client, signing every request with `credentials` (servers with `aclEnable=true`;
    /// admin requests such as updateTopic need an admin account).
    pub fn with_credentials(mut self, credentials: Option<rmq_client::Credentials>) -> Self {
        if let Some(c) = credentials {
            self.rpc = self.rpc.with_request_hook(rmq_client::signing_hook(c));
        }
        self
    }

    /// Sends one request to `addr`; a non-zero code is an error naming the address.
    pub async fn call(&self, addr: &str, req: RemotingCommand) -> anyhow::Result<RemotingCommand> {
        let resp = self.rpc.invoke(addr, req, ADMIN_TIMEOUT_MS).await.with_context(|| format!("request to {addr}"))?;
        if resp.code != 0 {
            bail!("{addr} answered code {}: {}", resp.code, resp.remark.unwrap_or_default());
        }
        Ok(resp)
    }

    async fn namesrv_call(&self, req: RemotingCommand) -> anyhow::Result<RemotingCommand> {
        let mut last = anyhow!("no name server given (-n)");
        for addr in &self.namesrv {
            match self.call(addr, req.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Cluster → brokers.
    pub async fn cluster_info(&self) -> anyhow::Result<ClusterInfo> {
        let resp = self.namesrv_call(RemotingCommand::request(RequestCode::GetBrokerClusterInfo, 0)).await?;
        from_json(&resp.body).context("decoding cluster info")
    }

    /// All topics known to the NameServer.
    pub async fn topic_list(&self) -> anyhow::Result<Vec<String>> {
        let resp = self.namesrv_call(RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver, 0)).await?;
        Ok(from_json::<TopicList>(&resp.body).context("decoding topic list")?.topic_list)
    }

    /// A topic's route.
    pub async fn topic_route(&self, topic: &str) -> anyhow::Result<TopicRouteData> {
        let req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 0).with_ext("topic", topic);
        let resp = self.namesrv_call(req).await?;
        from_json(&resp.body).context("decoding route")
    }

    /// Master addresses of a cluster (every cluster when `None`).
    pub async fn masters(&self, cluster: Option<&str>) -> anyhow::Result<Vec<String>> {
        let info = self.cluster_info().await?;
        let mut out = Vec::new();
        for (name, data) in &info.broker_addr_table {
            let in_cluster =
                cluster.is_none_or(|c| info.cluster_addr_table.get(c).is_some_and(|names| names.contains(name)));
            if in_cluster {
                if let Some(a) = data.master_addr() {
                    out.push(a.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Creates or updates a topic on each broker address.
    pub async fn update_topic(
        &self,
        brokers: &[String],
        topic: &str,
        read: i32,
        write: i32,
        order: bool,
    ) -> anyhow::Result<()> {
        if brokers.is_empty() {
            bail!("no master broker found to create {topic} on");
        }
        let h = CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: read,
            write_queue_nums: write,
            perm: perm::READ_WRITE,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: Some(0),
            order,
        };
        for b in brokers {
            self.call(b, RemotingCommand::request_with(RequestCode::UpdateAndCreateTopic, 0, &h)).await?;
        }
        Ok(())
    }

    /// Consume progress of a group on every master.
    pub async fn consumer_progress(&self, group: &str, topic: Option<&str>) -> anyhow::Result<ConsumeStats> {
        let mut all = ConsumeStats::default();
        for b in self.masters(None).await? {
            let h = ConsumeStatsRequestHeader { consumer_group: group.into(), topic: topic.map(String::from) };
            let resp = self.call(&b, RemotingCommand::request_with(RequestCode::GetConsumeStats, 0, &h)).await?;
            let s: ConsumeStats = from_json(&resp.body).context("decoding consume stats")?;
            all.queues.extend(s.queues);
        }
        all.queues.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(all)
    }

    /// The brokers a command acts on: `-b` if given, else every master of the cluster given by
    /// `-c`, else every master.
    pub async fn targets(&self, broker: Option<&str>, cluster: Option<&str>) -> anyhow::Result<Vec<String>> {
        let targets = match broker {
            Some(b) => vec![b.to_string()],
            None => self.masters(cluster).await?,
        };
        if targets.is_empty() {
            bail!("no master broker found{}", cluster.map(|c| format!(" in cluster {c}")).unwrap_or_default());
        }
        Ok(targets)
    }

    /// Master addresses of the brokers serving `topic`.
    pub async fn topic_masters(&self, topic: &str) -> anyhow::Result<Vec<(String, String)>> {
        let route = self.topic_route(topic).await?;
        Ok(route
            .broker_datas
            .iter()
            .filter_map(|b| b.master_addr().map(|a| (b.broker_name.clone(), a.to_string())))
            .collect())
    }

    /// Deletes a topic from the masters (of a cluster) and from every NameServer.
    pub async fn delete_topic(&self, cluster: Option<&str>, topic: &str) -> anyhow::Result<Vec<String>> {
        let brokers = self.masters(cluster).await?;
        for b in &brokers {
            let req = RemotingCommand::request(RequestCode::DeleteTopicInBroker, 0).with_ext("topic", topic);
            self.call(b, req).await?;
        }
        for ns in &self.namesrv {
            let req = RemotingCommand::request(RequestCode::DeleteTopicInNamesrv, 0).with_ext("topic", topic);
            self.call(ns, req).await?;
        }
        Ok(brokers)
    }

    /// Per broker of `topic`, per queue: min offset, max offset, last store time.
    pub async fn topic_status(&self, topic: &str) -> anyhow::Result<Vec<(String, Vec<serde_json::Value>)>> {
        let mut out = Vec::new();
        for (name, addr) in self.topic_masters(topic).await? {
            let req = RemotingCommand::request(RequestCode::GetTopicStatsInfo, 0).with_ext("topic", topic);
            let resp = self.call(&addr, req).await?;
            let body: serde_json::Value = serde_json::from_slice(&resp.body).context("decoding topic stats")?;
            let queues = body["offsetTable"].as_array().cloned().unwrap_or_default();
            out.push((name, queues));
        }
        Ok(out)
    }

    /// A broker's GET_BROKER_RUNTIME_INFO table.
    pub async fn runtime_info(&self, addr: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo, 0)).await?;
        let body: serde_json::Value = serde_json::from_slice(&resp.body).context("decoding runtime info")?;
        let table = body["table"].as_object().context("runtime info without a table")?;
        Ok(table.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
    }

    /// A broker's settings as `key=value` lines.
    pub async fn broker_config(&self, addr: &str) -> anyhow::Result<Vec<(String, String)>> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GetBrokerConfig, 0)).await?;
        let text = String::from_utf8(resp.body.to_vec()).context("broker config is not UTF-8")?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect())
    }

    /// Changes one setting on a running broker; returns the broker's remark.
    pub async fn update_broker_config(&self, addr: &str, key: &str, value: &str) -> anyhow::Result<String> {
        let req = RemotingCommand::request(RequestCode::UpdateBrokerConfig, 0)
            .with_body(format!("{key}={value}\n").into_bytes());
        Ok(self.call(addr, req).await?.remark.unwrap_or_default())
    }

    /// Creates or updates a subscription group (a SubscriptionGroupConfig JSON) on a broker.
    pub async fn update_sub_group(&self, addr: &str, config: &serde_json::Value) -> anyhow::Result<()> {
        let req = RemotingCommand::request(RequestCode::UpdateAndCreateSubscriptionGroup, 0)
            .with_body(serde_json::to_vec(config).expect("json values serialize"));
        self.call(addr, req).await.map(|_| ())
    }

    /// A broker's subscription groups.
    pub async fn sub_groups(&self, addr: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GetAllSubscriptionGroupConfig, 0)).await?;
        serde_json::from_slice(&resp.body).context("decoding subscription groups")
    }

    /// Deletes a subscription group from a broker (and its offsets with `clean_offset`).
    pub async fn delete_sub_group(&self, addr: &str, group: &str, clean_offset: bool) -> anyhow::Result<()> {
        let req = RemotingCommand::request(RequestCode::DeleteSubscriptionGroup, 0)
            .with_ext("groupName", group)
            .with_ext("cleanOffset", clean_offset);
        self.call(addr, req).await.map(|_| ())
    }

    /// The members of a consumer group, from every master it is connected to (deduplicated).
    pub async fn consumer_connections(&self, group: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let req = RemotingCommand::request(RequestCode::GetConsumerConnectionList, 0).with_ext("consumerGroup", group);
        self.connections(&self.masters(None).await?, req)
            .await
            .map_err(|e| e.context(format!("consumer group {group} is not online")))
    }

    /// The producers of a group, from the masters of `topic`.
    pub async fn producer_connections(&self, group: &str, topic: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let req = RemotingCommand::request(RequestCode::GetProducerConnectionList, 0).with_ext("producerGroup", group);
        let masters: Vec<String> = self.topic_masters(topic).await?.into_iter().map(|(_, a)| a).collect();
        self.connections(&masters, req).await.map_err(|e| e.context(format!("producer group {group} is not online")))
    }

    /// The `connectionSet` entries `req` gets from each of `brokers`, merged by client id; an
    /// error only when no broker answered with any.
    async fn connections(&self, brokers: &[String], req: RemotingCommand) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut all: Vec<serde_json::Value> = Vec::new();
        let mut last_err = None;
        for b in brokers {
            match self.call(b, req.clone()).await {
                Ok(resp) => {
                    let body: serde_json::Value = serde_json::from_slice(&resp.body).context("decoding connections")?;
                    for c in body["connectionSet"].as_array().cloned().unwrap_or_default() {
                        if !all.iter().any(|x| x["clientId"] == c["clientId"]) {
                            all.push(c);
                        }
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        match (all.is_empty(), last_err) {
            (true, Some(e)) => Err(e),
            _ => Ok(all),
        }
    }

    /// Resets a group's offsets on `topic` to the first message stored at or after
    /// `timestamp_ms` (-1: the end) on every master of the topic; returns the new offsets.
    pub async fn reset_offset(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
    ) -> anyhow::Result<Vec<(MessageQueue, i64)>> {
        let h = ResetOffsetRequestHeader {
            topic: topic.into(),
            group: group.into(),
            timestamp: timestamp_ms,
            is_force: force,
        };
        let mut out = Vec::new();
        for (_, addr) in self.topic_masters(topic).await? {
            let resp =
                self.call(&addr, RemotingCommand::request_with(RequestCode::InvokeBrokerToResetOffset, 0, &h)).await?;
            let body = ResetOffsetBody::parse(&resp.body).map_err(|e| anyhow!("decoding reset offsets: {e}"))?;
            out.extend(body.offset_table);
        }
        out.sort();
        Ok(out)
    }

    /// Every group's progress on a broker (GET_BROKER_CONSUME_STATS).
    pub async fn broker_consume_stats(&self, addr: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GetBrokerConsumeStats, 0)).await?;
        serde_json::from_slice(&resp.body).context("decoding consume stats")
    }

    /// A counter since the broker started: TOPIC_PUT_NUMS of a topic, GROUP_GET_NUMS of
    /// `topic@group`.
    pub async fn stats_total(&self, addr: &str, name: &str, key: &str) -> anyhow::Result<u64> {
        let req = RemotingCommand::request(RequestCode::ViewBrokerStatsData, 0)
            .with_ext("statsName", name)
            .with_ext("statsKey", key);
        let resp = self.call(addr, req).await?;
        let body: serde_json::Value = serde_json::from_slice(&resp.body).context("decoding stats")?;
        body["total"].as_u64().context("stats without a total")
    }

    /// Sets a NameServer KV entry on every NameServer.
    pub async fn put_kv(&self, namespace: &str, key: &str, value: &str) -> anyhow::Result<()> {
        for ns in &self.namesrv {
            let req = RemotingCommand::request(RequestCode::PutKvConfig, 0)
                .with_ext("namespace", namespace)
                .with_ext("key", key)
                .with_ext("value", value);
            self.call(ns, req).await?;
        }
        Ok(())
    }

    /// A NameServer KV entry (`None`: not set).
    pub async fn get_kv(&self, namespace: &str, key: &str) -> anyhow::Result<Option<String>> {
        let req =
            RemotingCommand::request(RequestCode::GetKvConfig, 0).with_ext("namespace", namespace).with_ext("key", key);
        match self.namesrv_call(req).await {
            Ok(resp) => Ok(resp.ext("value").map(String::from)),
            Err(e) if e.to_string().contains("code 22") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a NameServer KV entry on every NameServer.
    pub async fn delete_kv(&self, namespace: &str, key: &str) -> anyhow::Result<()> {
        for ns in &self.namesrv {
            let req = RemotingCommand::request(RequestCode::DeleteKvConfig, 0)
                .with_ext("namespace", namespace)
                .with_ext("key", key);
            self.call(ns, req).await?;
        }
        Ok(())
    }
}
