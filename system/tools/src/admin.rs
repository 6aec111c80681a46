//! Admin requests: topic creation, listing, routes, cluster info, consumer progress.

use anyhow::{anyhow, bail, Context};
use rmq_proto::body::{from_json, ClusterInfo, ConsumeStats, TopicList, TopicRouteData};
use rmq_proto::codes::{perm, RequestCode};
use rmq_proto::header::{ConsumeStatsRequestHeader, CreateTopicRequestHeader};
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

    async fn call(&self, addr: &str, req: RemotingCommand) -> anyhow::Result<RemotingCommand> {
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
}
