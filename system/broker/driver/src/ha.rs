//! The HA connections (RocketMQ 4.x wire format, `rocketmq-spec.md` §3.1): raw TCP, no
//! remoting frames. The slave sends 8-byte big-endian CommitLog offsets; the master sends a
//! 12-byte header (8-byte offset, 4-byte length) and that many CommitLog bytes (length 0: a
//! heartbeat). What to send, and when, is decided by the broker core; these tasks only move
//! bytes and report what arrived.

use std::time::Duration;

use bytes::Bytes;
use rmq_rt::{spawn, ConnId, Env, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Largest body a master may announce in one transfer (the core sends at most 32 KiB).
const HA_BODY_MAX: usize = 1 << 20;

/// What the HA tasks report to the node loop.
#[derive(Debug)]
pub(crate) enum HaEvent {
    /// Master: a slave connected; `tx` takes the bytes to write to it.
    SlaveOpened { conn: ConnId, tx: mpsc::UnboundedSender<Bytes> },
    /// Master: a slave reported its offset.
    SlaveReport { conn: ConnId, offset: u64 },
    /// Master: a slave's connection ended.
    SlaveClosed { conn: ConnId },
    /// Slave: connection `generation` to the master is up; `tx` takes reports.
    MasterConnected { generation: u64, tx: mpsc::UnboundedSender<Bytes> },
    /// Slave: the master streamed bytes (empty: a heartbeat).
    MasterData { generation: u64, offset: u64, bytes: Bytes },
    /// Slave: connection `generation` failed or ended.
    MasterClosed { generation: u64 },
    /// An answer to this broker's own request (a NameServer's to REGISTER_BROKER, the
    /// master's to a slave's metadata request), carrying the opaque the core chose.
    Answer(rmq_proto::RemotingCommand),
}

/// Accepts slaves on the HA listener until the node loop goes away.
pub(crate) async fn accept_slaves<L: Listener>(mut listener: L, events: mpsc::UnboundedSender<HaEvent>) {
    let mut next = 1u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "HA accept failed");
                rmq_rt::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn = ConnId(next);
        next += 1;
        tracing::info!(%peer, conn = conn.0, "slave connected");
        let (mut rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel();
        if events.send(HaEvent::SlaveOpened { conn, tx }).is_err() {
            return;
        }
        spawn(write_all_of(wr, rx));
        let events = events.clone();
        spawn(async move {
            let mut word = [0u8; 8];
            while rd.read_exact(&mut word).await.is_ok() {
                if events.send(HaEvent::SlaveReport { conn, offset: u64::from_be_bytes(word) }).is_err() {
                    return;
                }
            }
            let _ = events.send(HaEvent::SlaveClosed { conn });
        });
    }
}

/// Connects to the master's HA port as connection `generation` and reads what it streams,
/// ending the connection after `idle_ms` of silence (the master heartbeats more often).
pub(crate) async fn connect_master<E: Env>(
    env: E,
    addr: String,
    generation: u64,
    idle_ms: u64,
    events: mpsc::UnboundedSender<HaEvent>,
) {
    // A blackholed master never answers the connect: give up after the idle bound.
    let stream = match rmq_rt::time::timeout(Duration::from_millis(idle_ms), env.connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%addr, error = %e, "cannot reach the master's HA port");
            let _ = events.send(HaEvent::MasterClosed { generation });
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, "connecting to the master's HA port timed out");
            let _ = events.send(HaEvent::MasterClosed { generation });
            return;
        }
    };
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    if events.send(HaEvent::MasterConnected { generation, tx }).is_err() {
        return;
    }
    spawn(write_all_of(wr, rx));
    let idle = Duration::from_millis(idle_ms);
    loop {
        let mut head = [0u8; 12];
        match rmq_rt::time::timeout(idle, rd.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!(%addr, "master silent past haHousekeepingInterval; reconnecting");
                break;
            }
        }
        let offset = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        if len > HA_BODY_MAX {
            tracing::warn!(%addr, len, "master announced an oversized HA transfer; closing");
            break;
        }
        let mut body = vec![0u8; len];
        if len > 0 && rd.read_exact(&mut body).await.is_err() {
            break;
        }
        if events.send(HaEvent::MasterData { generation, offset, bytes: Bytes::from(body) }).is_err() {
            return;
        }
    }
    let _ = events.send(HaEvent::MasterClosed { generation });
}

/// Writes whatever arrives on `rx` until it closes or a write fails, then shuts the stream.
async fn write_all_of<W: tokio::io::AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(b) = rx.recv().await {
        if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// The master's frame for `bytes` at `offset`.
pub(crate) fn transfer_frame(offset: u64, bytes: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(12 + bytes.len());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    Bytes::from(out)
}
