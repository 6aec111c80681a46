//! [`StoreError`]: why a storage operation failed, named by cause.

use rmq_proto::message::MessageError;

/// Why a storage operation failed.
///
/// Corruption found while *recovering* is not an error: recovery truncates it and reports it in
/// [`crate::RecoveryReport`]. These are the failures a caller must handle.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A read or write past a segment's end (a bug in the caller, or a directory handing out a
    /// segment of the wrong size).
    #[error("access of {len_bytes} bytes at {pos} outside a segment of {capacity_bytes} bytes")]
    OutOfBounds {
        /// Position inside the segment.
        pos: u64,
        /// Length of the access.
        len_bytes: u64,
        /// The segment's size.
        capacity_bytes: u64,
    },
    /// The operating system refused an operation on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An existing segment file has another size than configured (the segment size setting was
    /// changed under existing data). Refused rather than resized, which would destroy data.
    #[error("{path} holds {actual_bytes} bytes, the configured segment size is {expected_bytes}")]
    SegmentSizeMismatch {
        /// The segment file.
        path: String,
        /// Configured size.
        expected_bytes: u64,
        /// Size found on disk.
        actual_bytes: u64,
    },
    /// A segment file's name is not a multiple of the configured segment size.
    #[error("{path} does not start at a multiple of the segment size {segment_bytes}")]
    MisalignedSegment {
        /// The segment file.
        path: String,
        /// Configured segment size (bytes).
        segment_bytes: u64,
    },
    /// A message whose record is larger than the configured limit or than a segment.
    #[error("message record of {size_bytes} bytes exceeds the limit of {max_bytes}")]
    MessageTooLarge {
        /// Encoded record size.
        size_bytes: usize,
        /// The limit it exceeds.
        max_bytes: usize,
    },
    /// The message cannot be encoded (body over 4 MiB, properties too long, ...).
    #[error("message not encodable: {0}")]
    Encode(#[source] MessageError),
    /// A topic that cannot name a ConsumeQueue directory (empty, `.`/`..`, a path separator or
    /// NUL, longer than a file name may be). Topic naming policy is the broker's; this only keeps
    /// paths inside the store.
    #[error("topic {topic:?} cannot name a ConsumeQueue directory")]
    InvalidTopic {
        /// The topic.
        topic: String,
    },
    /// A [`crate::StoreConfig`] value the store cannot work with.
    #[error("invalid store configuration: {reason}")]
    InvalidConfig {
        /// Which setting and why.
        reason: &'static str,
    },
    /// A CommitLog offset outside what the log holds.
    #[error("commit-log offset {commit_log_offset} is outside the stored range [{min_offset}, {max_offset})")]
    OffsetNotStored {
        /// The offset asked for.
        commit_log_offset: u64,
        /// Smallest offset held.
        min_offset: u64,
        /// Write position.
        max_offset: u64,
    },
    /// No valid message record starts at this CommitLog offset (an offset inside a record, blank
    /// padding, or corruption).
    #[error("no valid message record at commit-log offset {commit_log_offset}: {source}")]
    NoRecord {
        /// The offset asked for.
        commit_log_offset: u64,
        /// What the decoder found wrong.
        source: MessageError,
    },
    /// A ConsumeQueue write below the queue's first retained entry.
    #[error("queue offset {queue_offset} of {topic}/{queue_id} is below its minimum {min_offset}")]
    QueueOffsetBelowMin {
        /// Topic.
        topic: String,
        /// Queue id.
        queue_id: i32,
        /// The queue offset written.
        queue_offset: u64,
        /// The queue's smallest offset.
        min_offset: u64,
    },
    /// Bytes from a master that do not continue the slave's CommitLog.
    #[error("replicated bytes at {offset} do not continue this store's CommitLog: {reason}")]
    ReplicaMismatch {
        /// Where the bytes were to be appended.
        offset: u64,
        /// What does not fit.
        reason: String,
    },
    /// The disk (or quota) has no room for a new segment. Nothing was written; the operation
    /// can be retried once space returns.
    #[error("{path}: disk full: {source}")]
    DiskFull {
        /// The segment file that could not be allocated.
        path: String,
        /// The OS error (ENOSPC or EDQUOT).
        source: std::io::Error,
    },
    /// Another process holds the store root's lock file (a second broker on the same store).
    #[error("store {path} is locked by another process ({holder})")]
    Locked {
        /// The lock file.
        path: String,
        /// What the holder wrote into it (pid, listen address), possibly empty.
        holder: String,
    },
}
