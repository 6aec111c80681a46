//! Message storage as RocketMQ lays it out: one CommitLog shared by every topic, and a
//! ConsumeQueue of 20-byte entries per (topic, queue), both written through the
//! [`Segment`] / [`Directory`] seam. No threads, clocks or randomness: every byte goes
//! through the seam, so the same code runs over memory-mapped files, in memory, and over the
//! simulator's page-cache model.
//!
//! # Layout
//! On disk, under the directory's root (RocketMQ's `storePathRootDir`):
//! - `commitlog/<20-digit start offset>`: segments of stored-message records
//!   ([`rmq_proto::message`] layout), each ending in a BLANK record once full.
//! - `consumequeue/<topic>/<queueId>/<20-digit start byte offset>`: 20-byte index entries
//!   (commit-log offset, size, tag hash).
//! - `checkpoint`: one 4 KiB page; `confirmPhyOffset` (byte 32) is the CommitLog offset
//!   flushed together with every ConsumeQueue, where recovery starts.
//!
//! In code:
//! - [`segment`]: the seam ([`Segment`], [`Directory`], [`FlushJob`]) and its durability
//!   contract.
//! - [`error`]: [`StoreError`], why an operation failed.
//! - [`mmap`]: [`MmapSegment`] / [`MmapDirectory`], production (memmap2, msync).
//! - [`mem`]: [`MemSegment`] / [`MemDirectory`], for tests and model checking.
//! - [`commitlog`]: the append-only log, blank padding, truncation.
//! - [`consumequeue`]: one queue's index.
//! - [`checkpoint`]: the checkpoint page.
//! - [`index`]: the IndexFile, by key and unique key (`index/<20-digit first offset>`).
//! - [`store`]: [`MessageStore`], the API the broker calls: put, flush, get, recovery.
//!
//! # Calling contract
//! [`MessageStore::open`] recovers, then the owner calls [`MessageStore::put`] and the
//! readers from one thread. A put is indexed (visible to [`MessageStore::get_messages`]) at
//! once but durable only once a CommitLog flush covers its [`PutResult::end_offset`]: either
//! [`MessageStore::flush`] returned it, or the jobs of [`MessageStore::begin_flush`] ran and
//! the driver reported the target through [`MessageStore::complete_flush`]. Acknowledge
//! durable sends only then. ConsumeQueues and the checkpoint are flushed on a slower cadence
//! by [`MessageStore::checkpoint`] (or its detached form, [`MessageStore::begin_checkpoint`]);
//! recovery re-indexes everything after the checkpoint from the CommitLog, keeps everything
//! flushed, and keeps the valid prefix of the rest.
//! ```
//! use rmq_proto::message::{decode_message, MessageExt};
//! use rmq_store::{GetStatus, MemDirectory, MessageStore, StoreConfig};
//!
//! let config = StoreConfig { commit_log_segment_bytes: 1 << 20, ..StoreConfig::default() };
//! let (mut store, report) = MessageStore::open(MemDirectory::default(), config).unwrap();
//! assert_eq!(report.commit_log_end, 0);
//!
//! let mut msg = MessageExt { topic: "T".into(), queue_id: 1, body: "hi".into(), ..Default::default() };
//! let put = store.put(&mut msg).unwrap();
//! assert_eq!((put.queue_offset, msg.queue_offset), (0, 0));
//!
//! // Durable once a flush reaches the put's end; then it may be acknowledged.
//! assert!(store.commit_log_flushed_offset() < put.end_offset);
//! assert_eq!(store.flush().unwrap(), put.end_offset);
//! // Now and then: ConsumeQueues and the checkpoint (bounds recovery work).
//! assert_eq!(store.checkpoint().unwrap(), put.end_offset);
//!
//! let got = store.get_messages("T", 1, 0, 32, 1 << 20, &|_tag_hash| true);
//! assert_eq!(got.status, GetStatus::Found);
//! assert_eq!(got.next_begin_offset, 1);
//! let (stored, _) = decode_message(&got.messages[0], true).unwrap();
//! assert_eq!(stored.body, "hi");
//! store.assert_invariants();
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
pub mod commitlog;
pub mod consumequeue;
pub mod error;
pub mod index;
pub mod mem;
pub mod mmap;
pub mod segment;
pub mod store;

pub use error::StoreError;
pub use index::IndexConfig;
pub use mem::{DurableSegment, MemDirectory, MemDisk, MemSegment};
pub use mmap::{MmapDirectory, MmapSegment};
pub use segment::{Directory, FlushJob, Segment};
pub use store::{
    Cleaned, GetResult, GetStatus, MessageStore, PendingCheckpoint, PutResult, RecoveryReport, StoreConfig,
};
