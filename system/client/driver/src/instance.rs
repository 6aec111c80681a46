//! What one producer or consumer shares: its RPC connections, its client id and the route cache.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rmq_acl::Credentials;
use rmq_proto::body::{from_json, HeartbeatData, TopicRouteData};
use rmq_proto::codes::RequestCode;
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_rt::client::{Incoming, RequestHook};
use rmq_rt::{Env, RemotingClient};
use tokio::sync::mpsc;

use crate::{ClientConfig, ClientError};

/// Timeout of NameServer and admin RPCs.
pub const RPC_TIMEOUT_MS: u64 = 3_000;

/// A request hook that signs every request with `credentials` (RocketMQ's
/// `AclClientRPCHook`): for servers with `aclEnable=true`.
pub fn signing_hook(credentials: Credentials) -> RequestHook {
    RequestHook(std::sync::Arc::new(move |cmd: &mut RemotingCommand| credentials.sign(cmd)))
}

/// Connections, identity and cached routes.
#[derive(Debug, Clone)]
pub struct ClientInstance<E: Env> {
    /// Settings.
    pub config: ClientConfig,
    /// The RPC client.
    pub rpc: RemotingClient<E>,
    /// client_ip@instance_name.
    pub client_id: String,
    routes: Arc<Mutex<BTreeMap<String, TopicRouteData>>>,
    /// Broker name → the broker id the last pull answer suggested (suggestWhichBrokerId).
    suggested: Arc<Mutex<BTreeMap<String, i64>>>,
}

impl<E: Env> ClientInstance<E> {
    /// A new instance; server-initiated requests arrive on the returned receiver.
    pub fn new(env: E, config: ClientConfig) -> (Self, mpsc::UnboundedReceiver<Incoming>) {
        let instance = config
            .instance_name
            .clone()
            .unwrap_or_else(|| format!("{}#{}", env.process_id(), env.seed() % 1_000_000_007));
        let client_id = format!("{}@{}", config.client_ip, instance);
        let (mut rpc, incoming) = RemotingClient::with_incoming(env);
        if let Some(c) = &config.credentials {
            rpc = rpc.with_request_hook(signing_hook(c.clone()));
        }
        (ClientInstance { config, rpc, client_id, routes: Arc::default(), suggested: Arc::default() }, incoming)
    }

    /// The runtime.
    pub fn env(&self) -> &E {
        self.rpc.env()
    }

    /// Asks the NameServers (in order) for a topic's route and caches it.
    pub async fn fetch_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        let mut last = String::from("no name server configured");
        for addr in &self.config.namesrv_addrs {
            let req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 0).with_ext("topic", topic);
            match self.rpc.invoke(addr, req, RPC_TIMEOUT_MS).await {
                Ok(resp) if resp.code == 0 => {
                    let route: TopicRouteData =
                        from_json(&resp.body).map_err(|e| ClientError::Malformed(e.to_string()))?;
                    self.routes
                        .lock()
                        .expect("route cache lock is never poisoned")
                        .insert(topic.to_string(), route.clone());
                    return Ok(route);
                }
                Ok(resp) if resp.code == ResponseCode::TopicNotExist.code() => {
                    return Err(ClientError::NoRoute { topic: topic.to_string() });
                }
                Ok(resp) => last = format!("code {} {}", resp.code, resp.remark.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ClientError::NameServerUnreachable { addrs: self.config.namesrv_addrs.join(";"), last })
    }

    /// The cached route of a topic.
    pub fn cached_route(&self, topic: &str) -> Option<TopicRouteData> {
        self.routes.lock().expect("route cache lock is never poisoned").get(topic).cloned()
    }

    /// The master address of a broker, from any cached route.
    pub fn master_addr(&self, broker_name: &str) -> Option<String> {
        let routes = self.routes.lock().expect("route cache lock is never poisoned");
        routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.master_addr().map(String::from))
    }

    /// Records the broker id a pull answer suggested for a broker name (a master sending
    /// readers to its slave, or a slave cut off from its master keeping them).
    pub fn suggest(&self, broker_name: &str, broker_id: i64) {
        self.suggested.lock().expect("suggestion lock is never poisoned").insert(broker_name.to_string(), broker_id);
    }

    /// The address of the broker id last suggested for a broker name, if the route lists it.
    fn suggested_addr(&self, broker_name: &str) -> Option<String> {
        let id = *self.suggested.lock().expect("suggestion lock is never poisoned").get(broker_name)?;
        let routes = self.routes.lock().expect("route cache lock is never poisoned");
        routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.broker_addrs.get(&id).cloned())
    }

    /// Any address (master first) of a broker.
    pub fn any_addr(&self, broker_name: &str) -> Option<String> {
        let routes = self.routes.lock().expect("route cache lock is never poisoned");
        routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.broker_addrs.values().next().cloned())
    }

    /// The address to use for a queue's broker (for reads: the broker id the last pull answer
    /// suggested, else the master, else any replica), fetching the topic's route when the
    /// broker is not cached yet.
    pub async fn resolve(&self, mq: &rmq_proto::body::MessageQueue, master_only: bool) -> Result<String, ClientError> {
        let lookup = |inst: &Self| {
            if master_only {
                inst.master_addr(&mq.broker_name)
            } else {
                inst.suggested_addr(&mq.broker_name)
                    .or_else(|| inst.master_addr(&mq.broker_name))
                    .or_else(|| inst.any_addr(&mq.broker_name))
            }
        };
        if let Some(a) = lookup(self) {
            return Ok(a);
        }
        self.fetch_route(&mq.topic).await?;
        lookup(self).ok_or_else(|| ClientError::NoBrokerAddr { broker_name: mq.broker_name.clone() })
    }

    /// Every broker address in the cached routes.
    pub fn all_broker_addrs(&self) -> Vec<String> {
        let routes = self.routes.lock().expect("route cache lock is never poisoned");
        let mut v: Vec<String> = routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .flat_map(|b| b.broker_addrs.values().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Sends a heartbeat to every known broker.
    pub async fn heartbeat_all(&self, hb: &HeartbeatData) {
        self.heartbeat_to(&self.all_broker_addrs(), hb).await
    }

    /// Sends a heartbeat to each of `addrs`, in turn.
    pub async fn heartbeat_to(&self, addrs: &[String], hb: &HeartbeatData) {
        let body = rmq_proto::body::to_json(hb);
        for addr in addrs {
            let req = RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(body.clone());
            if let Err(e) = self.rpc.invoke(addr, req, RPC_TIMEOUT_MS).await {
                tracing::debug!(%addr, error = %e, "heartbeat failed");
            }
        }
    }

    /// Sends a request and maps a non-zero code to an error.
    pub async fn call(&self, addr: &str, req: RemotingCommand) -> Result<RemotingCommand, ClientError> {
        let resp = self.rpc.invoke(addr, req, RPC_TIMEOUT_MS).await?;
        if resp.code != 0 {
            return Err(ClientError::Server { code: resp.code, remark: resp.remark.unwrap_or_default() });
        }
        Ok(resp)
    }
}
