//! The remoting client against peers that misbehave at connect time.
//! (It drives tokio's paused clock, so the `--cfg madsim` build, whose facade runs on madsim, skips it.)
#![cfg(not(madsim))]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmq_proto::RemotingCommand;
use rmq_rt::client::CONNECT_TIMEOUT_MS;
use rmq_rt::{spawn, Env, RemotingClient, RpcError};

/// An Env whose connects to `blackhole` never complete (a powered-off peer whose SYNs go
/// unanswered) and whose other connects are refused at once.
#[derive(Clone)]
struct Blackhole;

struct NoListener;

impl rmq_rt::Listener for NoListener {
    type Stream = tokio::io::DuplexStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        std::future::pending().await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Env for Blackhole {
    type Stream = tokio::io::DuplexStream;
    type Listener = NoListener;
    type Dir = rmq_store::MemDirectory;
    async fn bind(&self, _addr: &str) -> io::Result<NoListener> {
        Ok(NoListener)
    }
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let blackhole = addr == "blackhole:1";
        async move {
            if blackhole {
                std::future::pending().await
            } else {
                Err(io::ErrorKind::ConnectionRefused.into())
            }
        }
    }
    fn now_ms(&self) -> u64 {
        0
    }
    fn seed(&self) -> u64 {
        0
    }
    fn open_dir(&self, _root: &str) -> io::Result<Self::Dir> {
        Ok(rmq_store::MemDirectory::default())
    }
    async fn offload<F, R>(&self, work: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        work()
    }
    fn process_id(&self) -> u32 {
        0
    }
}

#[test]
fn a_peer_that_never_answers_the_handshake_costs_its_requests_their_timeout_and_no_one_else_anything() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let client = Arc::new(RemotingClient::new(Blackhole));
        let stuck = {
            let client = client.clone();
            spawn(async move { client.invoke("blackhole:1", RemotingCommand::request(11, 0), 60_000).await })
        };
        tokio::task::yield_now().await;
        // Another address is not held up by the connect in flight.
        let other = rmq_rt::time::timeout(
            Duration::from_millis(10),
            client.invoke("other:1", RemotingCommand::request(11, 0), 60_000),
        )
        .await
        .expect("a request to another address does not wait for the stuck connect");
        assert!(matches!(other, Err(RpcError::Connect { .. })), "{other:?}");
        // The stuck one gives up after the connect timeout, not the request's 60 s.
        let started = tokio::time::Instant::now();
        let stuck = stuck.await.unwrap();
        assert!(
            matches!(&stuck, Err(RpcError::Connect { source, .. }) if source.kind() == io::ErrorKind::TimedOut),
            "{stuck:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(CONNECT_TIMEOUT_MS));
    });
}
