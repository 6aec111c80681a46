//! Message storage: one CommitLog shared by every topic, and a ConsumeQueue of 20-byte entries
//! per (topic, queue), both written through the [`Segment`] / [`Directory`] seam.
//!
//! # Layout
//! - [`segment`]: the seam, plus [`MmapSegment`]/[`MmapDirectory`] (production, memmap2) and
//!   [`MemSegment`]/[`MemDirectory`] (tests and model checking).
//! - [`commitlog`]: the append-only log of stored-message records, with blank padding at
//!   segment ends.
//! - [`consumequeue`]: per-queue index of (commit-log offset, size, tag hash).
//! - [`store`]: [`MessageStore`], the API the broker calls: put, flush, get, recovery.
//!
//! # Calling contract
//! Nothing written is durable until [`MessageStore::flush`] returned *and* the segment
//! implementation completed the flush; recovery keeps exactly the valid prefix of the CommitLog
//! and re-indexes it from the last [`MessageStore::checkpoint`].
//! ```
//! use rmq_store::{MessageStore, MemDirectory, StoreConfig, GetStatus};
//! use rmq_proto::message::MessageExt;
//! let (mut store, report) = MessageStore::open(MemDirectory::default(), StoreConfig::default()).unwrap();
//! assert_eq!(report.commit_log_end, 0);
//! let mut m = MessageExt { topic: "T".into(), queue_id: 1, body: bytes::Bytes::from_static(b"hi"), ..Default::default() };
//! let put = store.put(&mut m).unwrap();
//! assert_eq!((put.queue_offset, m.queue_offset), (0, 0));
//! assert_eq!(store.flush().unwrap(), put.end_offset);
//! let got = store.get_messages("T", 1, 0, 32, 1 << 20, &|_| true);
//! assert_eq!(got.status, GetStatus::Found);
//! assert_eq!(got.next_begin_offset, 1);
//! ```

pub mod commitlog;
pub mod consumequeue;
pub mod segment;
pub mod store;

pub use segment::{Directory, FlushJob, MemDirectory, MemSegment, MmapDirectory, MmapSegment, Segment};
pub use store::{GetResult, GetStatus, MessageStore, PutResult, RecoveryReport, StoreConfig};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A read or write past a segment's end.
    #[error("access [{pos}, {pos}+{len}) outside a segment of {capacity_bytes} bytes")]
    OutOfBounds {
        /// Position.
        pos: u64,
        /// Length.
        len: u64,
        /// Segment size.
        capacity_bytes: u64,
    },
    /// The operating system refused.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A message larger than the configured limit or a segment.
    #[error("message of {size_bytes} bytes exceeds the limit of {max_bytes}")]
    MessageTooLarge {
        /// Encoded size.
        size_bytes: usize,
        /// Limit.
        max_bytes: usize,
    },
    /// The message cannot be encoded.
    #[error("message not encodable: {0}")]
    Encode(rmq_proto::message::MessageError),
    /// No valid record at this CommitLog offset.
    #[error("no valid message at commit-log offset {offset}: {reason}")]
    NotFound {
        /// Offset.
        offset: u64,
        /// Why.
        reason: String,
    },
}
