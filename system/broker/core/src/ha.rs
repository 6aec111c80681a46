//! Master/slave replication decisions (RocketMQ 4.x HA, `rocketmq-spec.md` §3.1).
//!
//! The HA connections are a driver's business (a raw TCP protocol on `haListenPort`: the slave
//! sends 8-byte offsets, the master 12-byte headers plus CommitLog bytes); everything decided
//! about them is here:
//! - **master**: where streaming to each slave starts (refusing a slave that holds bytes this
//!   master lost), how much is in flight per slave, heartbeats, and the SYNC_MASTER waiters:
//!   a send is answered when some slave reported an offset covering it, FLUSH_SLAVE_TIMEOUT
//!   after `slave_timeout_ms`, SLAVE_NOT_AVAILABLE at once when no slave is attached or the
//!   best one is more than `ha_slave_fallbehind_max` bytes behind. The message is stored in
//!   every case: those codes mean "stored on the master, not confirmed on a slave".
//! - **slave**: connecting to the master, appending what it streams, and reporting how far it
//!   got: the written offset under ASYNC_FLUSH (RocketMQ's rule), the flushed offset under
//!   SYNC_FLUSH, so that SYNC_FLUSH on both plus SYNC_MASTER ("double sync") means the bytes
//!   are on two disks before SEND_OK.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use rmq_proto::{ConnId, RemotingCommand, ResponseCode};
use rmq_store::Directory;

use crate::{BrokerCore, BrokerRole, Event, FlushDiskType, Output};

/// Most bytes in one HA transfer (haTransferBatchSize).
pub const HA_TRANSFER_BATCH_BYTES: usize = 32 * 1024;

/// Where a fenced master records why (it survives restarts until an operator removes it).
pub const FENCE_PATH: &str = "config/haFenced.json";

/// A master's fence: it found a slave holding more than its store, which had opened empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fence {
    reason: String,
}

/// Reads the fence file, if any.
pub(crate) fn load_fence<D: Directory>(dir: &D) -> Result<Option<String>, String> {
    match dir.read_file(FENCE_PATH).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice::<Fence>(&bytes).map(|f| Some(f.reason)).map_err(|e| e.to_string()),
    }
}

/// Where a master keeps its history floor (see `Ha::floor`) across restarts.
pub const FLOOR_PATH: &str = "config/haFloor.json";

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Floor {
    /// Unconfirmed floor, if any.
    floor: Option<u64>,
    /// A life since the last confirmation opened with no CommitLog at all (a lost disk). Kept
    /// until a slave confirms this master's history: a crash of that empty life leaves a
    /// segment file behind, and the next open would otherwise look like an ordinary restart
    /// and cut a slave that holds the only copy of acknowledged messages (found by the
    /// `no-loss` model: disk lost, a send stored, a power cut, then the slave cut to zero).
    #[serde(default)]
    fresh: bool,
}

/// The history floor of a master opening with `commit_log_end`: the lowest end at open since
/// a slave last confirmed this master's history, recorded at once; and whether any life since
/// then opened on an empty store (`fresh` says whether this one did).
pub(crate) fn open_floor<D: Directory>(dir: &mut D, commit_log_end: u64, fresh: bool) -> Result<(u64, bool), String> {
    let prev = match dir.read_file(FLOOR_PATH).map_err(|e| e.to_string())? {
        None => None,
        Some(bytes) => Some(serde_json::from_slice::<Floor>(&bytes).map_err(|e| e.to_string())?),
    };
    let floor = prev.as_ref().and_then(|p| p.floor).map_or(commit_log_end, |p| p.min(commit_log_end));
    let fresh = fresh || prev.as_ref().is_some_and(|p| p.fresh);
    let now = Floor { floor: Some(floor), fresh };
    if prev.as_ref() != Some(&now) {
        let body = serde_json::to_vec(&now).expect("a floor serializes");
        dir.write_file(FLOOR_PATH, &body).map_err(|e| e.to_string())?;
    }
    Ok((floor, fresh))
}

/// Bytes streamed to a slave beyond its last report before the master waits for it.
pub const HA_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// One slave attached to this master.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlaveLink {
    /// Next byte to stream; `None` until the slave's first report.
    push_from: Option<u64>,
    /// The slave's last reported offset.
    acked: u64,
    /// When the slave was last heard from.
    last_heard_ms: u64,
    /// When the master last sent it anything (data or heartbeat).
    last_sent_ms: u64,
    /// The slave was told to cut its log back to this offset (it held bytes this master lost);
    /// its reports count again once one is at or below it.
    truncating_to: Option<u64>,
}

/// A SYNC_MASTER send waiting for a slave to report an offset covering it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SlaveWaiter {
    pub(crate) end_offset: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) conn: ConnId,
    pub(crate) resp: RemotingCommand,
}

/// This broker's side of replication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Ha {
    /// Master: attached slaves by HA connection.
    slaves: BTreeMap<ConnId, SlaveLink>,
    /// Master: SYNC_MASTER answers in CommitLog order.
    pub(crate) waiters: VecDeque<SlaveWaiter>,
    /// Slave: the HA connection to the master is up.
    master_connected: bool,
    /// Slave: a connect was asked for and not yet reported.
    connecting: bool,
    /// Slave: when to report (heartbeat) or retry connecting next.
    next_slave_ms: u64,
    /// Slave: the offset last reported.
    reported: Option<u64>,
    /// Master: the lowest CommitLog end at open over this master's lives since a slave last
    /// confirmed holding this life's history past it (persisted in [`FLOOR_PATH`]). Bytes
    /// below it are one history with whatever a slave received in any of those lives; bytes
    /// above it may have been rewritten by a later life after a crash lost them.
    floor: u64,
    /// Master: the floor is not yet confirmed by a slave in this life.
    floor_pending: bool,
    /// Master: the highest offset streamed to a slave in this life.
    streamed_high: u64,
    /// Master: the store directory held no CommitLog at open (new, or its disk was lost).
    fresh: bool,
    /// Master: fenced, and why: its store opened empty while a slave held data (a lost disk).
    /// It refuses sends and slaves and leaves the routes, so nothing the slave holds is
    /// overwritten or cut, and consumers read from the slave, until an operator restores the
    /// master's store from the slave and removes `config/haFenced.json`.
    pub(crate) fenced: Option<String>,
}

impl Ha {
    pub(crate) fn opened(floor: u64, fresh: bool, fenced: Option<String>) -> Self {
        Ha { floor, floor_pending: true, fresh, fenced, ..Ha::default() }
    }

    /// The best offset any slave reported.
    pub(crate) fn best_ack(&self) -> Option<u64> {
        self.slaves.values().filter(|s| s.push_from.is_some()).map(|s| s.acked).max()
    }
}

impl<D: Directory> BrokerCore<D> {
    /// Whether a SYNC_MASTER send can wait for a slave, or why not.
    pub(crate) fn slave_available(&self) -> Result<(), String> {
        let written = self.store.commit_log_max_offset();
        match self.ha.best_ack() {
            None => Err("no slave attached".into()),
            Some(acked) if written.saturating_sub(acked) > self.config.ha_slave_fallbehind_max => Err(format!(
                "the slave is {} bytes behind (haSlaveFallbehindMax {})",
                written - acked,
                self.config.ha_slave_fallbehind_max
            )),
            Some(_) => Ok(()),
        }
    }

    /// Holds a stored SYNC_MASTER send until a slave covers `end_offset`, or answers it now
    /// (SUCCESS if a slave already did, SLAVE_NOT_AVAILABLE if none can).
    pub(crate) fn wait_for_slave(&mut self, now_ms: u64, end_offset: u64, conn: ConnId, mut resp: RemotingCommand) {
        if self.ha.best_ack().is_some_and(|a| a >= end_offset) {
            self.answer_send(conn, resp);
            return;
        }
        if let Err(why) = self.slave_available() {
            resp.code = ResponseCode::SlaveNotAvailable.code();
            resp.remark = Some(format!("stored on the master, not replicated: {why}"));
            self.answer_send(conn, resp);
            return;
        }
        let deadline_ms = now_ms + self.config.sync_flush_timeout_ms;
        self.ha.waiters.push_back(SlaveWaiter { end_offset, deadline_ms, conn, resp });
    }

    /// Answers a held send (its code already set) and records it.
    pub(crate) fn answer_send(&mut self, conn: ConnId, resp: RemotingCommand) {
        let queue_offset = resp.ext("queueOffset").and_then(|s| s.parse().ok()).unwrap_or(0);
        let code = resp.code;
        self.event(|| Event::SendAnswered { code, queue_offset });
        self.outputs.push_back(Output::Transmit { conn, cmd: resp });
    }

    fn release_slave_waiters(&mut self) {
        let Some(acked) = self.ha.best_ack() else { return };
        while self.ha.waiters.front().is_some_and(|w| w.end_offset <= acked) {
            let w = self.ha.waiters.pop_front().expect("front checked above");
            self.answer_send(w.conn, w.resp);
        }
    }

    /// Waiters past their deadline get FLUSH_SLAVE_TIMEOUT: stored on the master only.
    pub(crate) fn expire_slave_waiters(&mut self, now_ms: u64) {
        while self.ha.waiters.front().is_some_and(|w| w.deadline_ms <= now_ms) {
            let mut w = self.ha.waiters.pop_front().expect("front checked above");
            w.resp.code = ResponseCode::FlushSlaveTimeout.code();
            w.resp.remark = Some("stored on the master; no slave confirmed it in time".into());
            self.answer_send(w.conn, w.resp);
        }
    }

    // ---- master side ----

    /// A slave opened an HA connection.
    pub fn on_ha_slave_opened(&mut self, now_ms: u64, conn: ConnId) {
        let link =
            SlaveLink { push_from: None, acked: 0, last_heard_ms: now_ms, last_sent_ms: now_ms, truncating_to: None };
        self.ha.slaves.insert(conn, link);
    }

    /// A slave reported a CommitLog offset. The first report of a connection says what the
    /// slave holds (its write position) and sets where streaming starts; it acknowledges
    /// nothing. Later ones acknowledge: the slave holds (under SYNC_FLUSH: has flushed)
    /// everything below them.
    ///
    /// A slave holding bytes past this master's end at open that this master has not streamed
    /// in this life holds a tail the master lost in a crash (an unflushed tail): its bytes
    /// from that end on may differ from what this master wrote since, so streaming would
    /// interleave two histories. It is told to cut its log back to the end at open (a
    /// heartbeat at that offset) and follows from there; what it cut was never acknowledged
    /// under SYNC_FLUSH, and is the measured loss window under ASYNC_FLUSH. A master whose
    /// store directory held no CommitLog at open (its disk was lost) does not cut a slave back
    /// to nothing: it fences itself and the slave keeps the data for an operator to restore,
    /// unless it is an ASYNC_MASTER that has already answered SEND_OK for writes of its own
    /// (then its history wins, and the slave's is the measured loss). A SYNC_MASTER over
    /// ASYNC_FLUSH fences itself whenever a slave is ahead: it answered SEND_OK for bytes
    /// only in its page cache, which the slave may be the only one to hold now.
    /// (Streamed-in-this-life is tracked per master, not per slave: the rule assumes one slave
    /// per broker group, as deployed.)
    pub fn on_ha_slave_report(&mut self, now_ms: u64, conn: ConnId, offset: u64) {
        let (floor, streamed_high) = (self.ha.floor, self.ha.streamed_high);
        let shared = offset <= floor.max(streamed_high);
        let fenced = self.ha.fenced.is_some();
        let start = if shared && !fenced { self.store.replica_start(offset) } else { None };
        // A master whose store opened empty keeps a slave's history (fencing itself) unless it
        // has since acknowledged writes of its own without one: an ASYNC_MASTER that did
        // answers for them, and its history wins (the slave is cut back). A SYNC_MASTER's
        // writes without a slave were answered SLAVE_NOT_AVAILABLE, never SEND_OK.
        let sync_master = self.config.broker_role == BrokerRole::SyncMaster;
        let keep_slave_history = fenced
            || (self.ha.fresh && (sync_master || self.store.commit_log_max_offset() == 0))
            // SYNC_MASTER over ASYNC_FLUSH answered SEND_OK for bytes only the slave kept.
            || (sync_master && self.config.flush_disk_type == FlushDiskType::AsyncFlush);
        let Some(link) = self.ha.slaves.get_mut(&conn) else { return };
        link.last_heard_ms = now_ms;
        if link.push_from.is_none() {
            match start {
                Some(from) => link.push_from = Some(from),
                None if keep_slave_history => {
                    self.ha.slaves.remove(&conn);
                    let reason = format!(
                        "a slave holds {offset} bytes of CommitLog, past this master's history (its store was lost, or SEND_OK went out for bytes only the slave kept): restore the master's store from the slave, then remove {FENCE_PATH}"
                    );
                    if self.ha.fenced.is_none() {
                        self.fence(reason.clone());
                        self.event(|| Event::SlaveAheadOfEmptyMaster { slave_offset: offset });
                    }
                    self.outputs.push_back(Output::HaClose { conn, reason });
                    return;
                }
                None => {
                    link.push_from = Some(floor);
                    link.truncating_to = Some(floor);
                    link.last_sent_ms = now_ms;
                    self.outputs.push_back(Output::HaTransmit { conn, offset: floor, bytes: Bytes::new() });
                    return;
                }
            }
            // What a slave holds when it connects is not yet an acknowledgement.
            self.stream_to_slaves(now_ms);
            return;
        }
        match link.truncating_to {
            Some(t) if offset > t => return, // Stale: sent before the slave cut its log.
            Some(_) => link.truncating_to = None,
            None => {}
        }
        link.acked = link.acked.max(offset);
        if self.ha.floor_pending && offset >= floor {
            // A slave holds this life's history past the floor: earlier lives no longer matter.
            let body = serde_json::to_vec(&Floor { floor: None, fresh: false }).expect("a floor serializes");
            if self.store.directory_mut().write_file(FLOOR_PATH, &body).is_ok() {
                self.ha.floor_pending = false;
                self.ha.fresh = false;
            }
        }
        self.release_slave_waiters();
        self.stream_to_slaves(now_ms);
    }

    /// Fences this master (see [`Ha::fenced`]): recorded on disk first, then the routes are
    /// left at once.
    fn fence(&mut self, reason: String) {
        let body = serde_json::to_vec(&Fence { reason: reason.clone() }).expect("a fence serializes");
        if let Err(e) = self.store.directory_mut().write_file(FENCE_PATH, &body) {
            // Still fenced for this life; the reason says the record is missing.
            self.ha.fenced = Some(format!("{reason} (not recorded on disk: {e})"));
        } else {
            self.ha.fenced = Some(reason);
        }
        // Held SYNC_MASTER sends stay held and time out as FLUSH_SLAVE_TIMEOUT (stored here,
        // never confirmed); nothing new is taken.
        let unreg = self.unregistration();
        self.outputs.push_back(Output::RegisterBroker(unreg));
    }

    /// The broker id a pull answer suggests: a slave without its master suggests itself.
    pub(crate) fn read_suggestion(&self) -> i64 {
        if self.config.broker_role == BrokerRole::Slave && !self.ha.master_connected {
            self.config.broker_id
        } else {
            0
        }
    }

    /// A slave's HA connection closed.
    pub fn on_ha_slave_closed(&mut self, _now_ms: u64, conn: ConnId) {
        self.ha.slaves.remove(&conn);
    }

    /// Streams new CommitLog bytes to every slave, within its window, plus heartbeats to idle
    /// ones; closes slaves silent past the housekeeping interval.
    pub(crate) fn stream_to_slaves(&mut self, now_ms: u64) {
        let written = self.store.commit_log_max_offset();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for (conn, link) in &mut self.ha.slaves {
            if now_ms.saturating_sub(link.last_heard_ms) > self.config.ha_housekeeping_ms {
                dead.push(*conn);
                continue;
            }
            let Some(mut from) = link.push_from else { continue };
            let mut sent = false;
            while from < written && from.saturating_sub(link.acked) < HA_WINDOW_BYTES {
                match self.store.read_for_replica(from, HA_TRANSFER_BATCH_BYTES) {
                    Ok(bytes) if !bytes.is_empty() => {
                        let len = bytes.len() as u64;
                        out.push(Output::HaTransmit { conn: *conn, offset: from, bytes: Bytes::from(bytes) });
                        from += len;
                        sent = true;
                    }
                    // Past a segment's written end (the rest is BLANK padding the next read
                    // skips) or nothing more: stop here.
                    _ => break,
                }
            }
            link.push_from = Some(from);
            self.ha.streamed_high = self.ha.streamed_high.max(from);
            if sent {
                link.last_sent_ms = now_ms;
            } else if now_ms.saturating_sub(link.last_sent_ms) >= self.config.ha_heartbeat_interval_ms {
                link.last_sent_ms = now_ms;
                out.push(Output::HaTransmit { conn: *conn, offset: from, bytes: Bytes::new() });
            }
        }
        for conn in dead {
            self.ha.slaves.remove(&conn);
            out.push(Output::HaClose { conn, reason: "slave silent past haHousekeepingInterval".into() });
        }
        self.outputs.extend(out);
    }

    // ---- slave side ----

    /// The HA connection to the master is up; the slave reports where it stands.
    pub fn on_ha_master_connected(&mut self, now_ms: u64) {
        self.ha.connecting = false;
        self.ha.master_connected = true;
        // The first report says what this slave holds (its write position, flushed or not):
        // the master streams from there, or sees that the slave holds bytes it lost.
        let held = self.store.commit_log_max_offset();
        self.ha.reported = Some(held);
        self.ha.next_slave_ms = now_ms + self.config.ha_heartbeat_interval_ms;
        self.outputs.push_back(Output::HaReport { offset: held });
    }

    /// The HA connection to the master failed or closed; the next timer reconnects.
    pub fn on_ha_master_closed(&mut self, now_ms: u64) {
        self.ha.connecting = false;
        self.ha.master_connected = false;
        self.ha.next_slave_ms = now_ms + self.config.ha_heartbeat_interval_ms.min(1_000);
    }

    /// The master streamed `bytes` at `offset` (empty: a heartbeat). Bytes that do not
    /// continue this slave's CommitLog close the connection (the next one starts where the
    /// slave stands).
    pub fn on_ha_master_data(&mut self, now_ms: u64, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            // A heartbeat below what this slave holds: the master's log ends there (it lost an
            // unflushed tail this slave had received). Cut back to it and follow the master.
            let from = self.store.commit_log_max_offset();
            if offset < from {
                match self.store.truncate_replica(offset) {
                    Ok(_) => {
                        self.truncations += 1;
                        self.flush_requested_to = self.flushed_offset();
                        self.event(|| Event::ReplicaTruncated { from, to: offset });
                        // Group offsets committed here while the master was away may point
                        // into the cut tail; new records reuse those queue offsets, so a group
                        // resuming from such an offset would skip them. Lower them to the new
                        // queue ends, as recovery does.
                        let store = &self.store;
                        self.offsets.cap_at(|topic, qid| store.max_queue_offset(topic, qid));
                        // Consumers parked past a queue's new end had read what was cut:
                        // answer them now (OFFSET_MOVED to the end), before new records reuse
                        // those queue offsets and they would skip them.
                        for (topic, queue_id) in self.store.queues() {
                            let max = self.store.max_queue_offset(&topic, queue_id);
                            for hold in self.holds.take(&topic, queue_id, |h| h.queue_offset > max) {
                                self.answer_hold(now_ms, hold);
                            }
                        }
                        self.ha.reported = None;
                        self.report_to_master(now_ms, true);
                    }
                    Err(e) => {
                        self.ha.master_connected = false;
                        self.ha.next_slave_ms = now_ms;
                        self.outputs
                            .push_back(Output::HaDisconnect { reason: format!("cannot follow the master: {e}") });
                    }
                }
            }
            return;
        }
        let queues_before = self.store.queue_count();
        match self.store.append_replicated(offset, bytes) {
            Ok(_) => {
                if self.store.queue_count() != queues_before {
                    // Topics reach a slave with their data: a queue it had not seen gets a topic
                    // config, so consumers can pull it here.
                    self.topics_dirty |= self.topics.restore_from_queues(now_ms, &self.store.queues());
                }
                self.wake_holds(now_ms);
                if self.config.flush_disk_type == FlushDiskType::SyncFlush {
                    self.request_flush(); // Reported from on_flushed.
                } else {
                    self.report_to_master(now_ms, false);
                }
            }
            Err(e) => {
                self.ha.master_connected = false;
                self.ha.next_slave_ms = now_ms;
                self.outputs.push_back(Output::HaDisconnect { reason: format!("replication refused: {e}") });
            }
        }
    }

    /// The offset a slave vouches for: written, or flushed under SYNC_FLUSH.
    fn slave_offset(&self) -> u64 {
        match self.config.flush_disk_type {
            FlushDiskType::SyncFlush => self.store.commit_log_flushed_offset(),
            FlushDiskType::AsyncFlush => self.store.commit_log_max_offset(),
        }
    }

    /// Reports to the master if the offset moved (or `force`, the heartbeat).
    pub(crate) fn report_to_master(&mut self, now_ms: u64, force: bool) {
        if self.config.broker_role != BrokerRole::Slave || !self.ha.master_connected {
            return;
        }
        let offset = self.slave_offset();
        if force || self.ha.reported != Some(offset) {
            self.ha.reported = Some(offset);
            self.ha.next_slave_ms = now_ms + self.config.ha_heartbeat_interval_ms;
            self.outputs.push_back(Output::HaReport { offset });
        }
    }

    /// Replication timers: slave reconnects and heartbeats, master heartbeats, housekeeping
    /// and SYNC_MASTER timeouts.
    pub(crate) fn ha_timer(&mut self, now_ms: u64) {
        match self.config.broker_role {
            BrokerRole::Slave => {
                if now_ms >= self.ha.next_slave_ms {
                    if self.ha.master_connected {
                        self.report_to_master(now_ms, true);
                    } else if !self.ha.connecting {
                        let addr = self.config.ha_master_addr.clone().or_else(|| self.sync.master_ha_addr.clone());
                        if let Some(addr) = addr {
                            self.ha.connecting = true;
                            self.outputs.push_back(Output::HaConnect { addr });
                        }
                        self.ha.next_slave_ms = now_ms + self.config.ha_heartbeat_interval_ms;
                    } else {
                        // A connect still pending (a blackholed host answers nothing): look
                        // again later; a deadline left in the past would spin the node loop.
                        self.ha.next_slave_ms = now_ms + self.config.ha_heartbeat_interval_ms;
                    }
                }
            }
            BrokerRole::AsyncMaster | BrokerRole::SyncMaster => {
                self.expire_slave_waiters(now_ms);
                self.stream_to_slaves(now_ms);
            }
        }
    }

    /// The earliest replication deadline.
    pub(crate) fn ha_deadline_ms(&self) -> Option<u64> {
        match self.config.broker_role {
            BrokerRole::Slave => Some(self.ha.next_slave_ms),
            _ => {
                let beat = self
                    .ha
                    .slaves
                    .values()
                    .map(|l| {
                        let silent = l.last_heard_ms + self.config.ha_housekeeping_ms + 1;
                        // Heartbeats go only to slaves that reported where they stand.
                        match l.push_from {
                            Some(_) => (l.last_sent_ms + self.config.ha_heartbeat_interval_ms).min(silent),
                            None => silent,
                        }
                    })
                    .min();
                let waiter = self.ha.waiters.front().map(|w| w.deadline_ms);
                beat.into_iter().chain(waiter).min()
            }
        }
    }

    /// Replication invariants.
    pub(crate) fn assert_ha_invariants(&self) {
        let written = self.store.commit_log_max_offset();
        let mut prev = 0;
        for w in &self.ha.waiters {
            assert!(w.end_offset >= prev && w.end_offset <= written, "slave waiters out of order or beyond the log");
            prev = w.end_offset;
        }
        for link in self.ha.slaves.values() {
            if let Some(from) = link.push_from {
                assert!(from <= written, "streamed beyond the CommitLog end");
            }
        }
        if self.config.broker_role == BrokerRole::Slave {
            assert!(self.ha.slaves.is_empty() && self.ha.waiters.is_empty(), "a slave has slaves or waiters");
        }
    }
}
