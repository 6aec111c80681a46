//! An in-process cluster (one NameServer, one broker) on 127.0.0.1 with ephemeral ports and a
//! temporary store: the README's one-command demo and `mqbench --embedded`.

use rmq_broker::{BrokerHandle, BrokerOptions};
use rmq_broker_core::{BrokerConfig, FlushDiskType};
use rmq_namesrv::NamesrvHandle;
use rmq_rt::RealEnv;

/// A running single-node cluster; dropped stores are removed.
#[derive(Debug)]
pub struct EmbeddedCluster {
    /// NameServer address.
    pub namesrv_addr: String,
    /// Broker address.
    pub broker_addr: String,
    namesrv: NamesrvHandle,
    broker: BrokerHandle,
    /// Kept so the directory lives as long as the cluster.
    pub store_dir: tempfile::TempDir,
}

impl EmbeddedCluster {
    /// Starts a NameServer and a broker; waits until the broker is registered.
    pub async fn start(flush: FlushDiskType, tune: impl FnOnce(&mut BrokerConfig)) -> anyhow::Result<Self> {
        let env = RealEnv::default();
        let namesrv = rmq_namesrv::start(env.clone(), "127.0.0.1:0", Default::default()).await?;
        let namesrv_addr = namesrv.local_addr.to_string();
        let store_dir = tempfile::tempdir()?;
        let mut core = BrokerConfig { flush_disk_type: flush, broker_addr: "127.0.0.1:0".into(), ..Default::default() };
        core.store.commit_log_segment_bytes = 256 * 1024 * 1024;
        core.store.consume_queue_segment_entries = 100_000;
        tune(&mut core);
        let opts = BrokerOptions {
            listen: "127.0.0.1:0".into(),
            namesrv_addrs: vec![namesrv_addr.clone()],
            store_root: store_dir.path().to_string_lossy().into_owned(),
            core,
            limits: Default::default(),
            ha_listen: None,
            metrics_listen: None,
        };
        let broker = rmq_broker::start(env.clone(), opts).await?;
        let broker_addr = broker.advertised_addr.clone();
        let admin = crate::admin::Admin::new(env, vec![namesrv_addr.clone()]);
        for _ in 0..200 {
            if !admin.masters(None).await.unwrap_or_default().is_empty() {
                break;
            }
            rmq_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(EmbeddedCluster { namesrv_addr, broker_addr, namesrv, broker, store_dir })
    }

    /// Stops the broker (flushing) and the NameServer.
    pub async fn stop(self) {
        self.broker.shutdown().await;
        self.namesrv.shutdown().await;
    }
}
