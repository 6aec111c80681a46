//! The `checkpoint` file: one 4 KiB page holding five big-endian i64 fields, as RocketMQ's
//! StoreCheckpoint. Recovery trusts `confirm_phy_offset`: the CommitLog below it, and every
//! ConsumeQueue entry of a message below it, were durable when the checkpoint was written.

/// Where the checkpoint lives, relative to the store root.
pub const CHECKPOINT_PATH: &str = "checkpoint";
/// Size of the checkpoint file (one OS page).
pub const CHECKPOINT_BYTES: usize = 4096;
/// Bytes that carry fields; the rest of the page is zero.
const FIELDS_BYTES: usize = 40;

/// The checkpoint's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Checkpoint {
    /// physicMsgTimestamp: store time of the last message flushed in the CommitLog.
    pub physic_msg_timestamp_ms: i64,
    /// logicsMsgTimestamp: store time of the last message whose ConsumeQueue entry is flushed.
    pub logics_msg_timestamp_ms: i64,
    /// indexMsgTimestamp: no IndexFile here, always 0.
    pub index_msg_timestamp_ms: i64,
    /// masterFlushedOffset: a slave's copy of the master's flushed offset; 0 on a master.
    pub master_flushed_offset: u64,
    /// confirmPhyOffset: the CommitLog offset flushed together with every ConsumeQueue.
    pub confirm_phy_offset: u64,
}

impl Checkpoint {
    /// The 4 KiB page.
    pub fn encode(&self) -> Vec<u8> {
        let mut page = vec![0u8; CHECKPOINT_BYTES];
        let fields = [
            self.physic_msg_timestamp_ms,
            self.logics_msg_timestamp_ms,
            self.index_msg_timestamp_ms,
            i64::try_from(self.master_flushed_offset).unwrap_or(i64::MAX),
            i64::try_from(self.confirm_phy_offset).unwrap_or(i64::MAX),
        ];
        for (i, field) in fields.iter().enumerate() {
            page[i * 8..i * 8 + 8].copy_from_slice(&field.to_be_bytes());
        }
        page
    }

    /// Reads the fields; `None` when the file is too short to hold them. Negative offsets (a
    /// foreign or damaged file) read as 0, which makes recovery scan from the first segment.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let fields = bytes.get(..FIELDS_BYTES)?;
        let field = |i: usize| i64::from_be_bytes(fields[i * 8..i * 8 + 8].try_into().expect("8-byte slice"));
        Some(Checkpoint {
            physic_msg_timestamp_ms: field(0),
            logics_msg_timestamp_ms: field(1),
            index_msg_timestamp_ms: field(2),
            master_flushed_offset: u64::try_from(field(3)).unwrap_or(0),
            confirm_phy_offset: u64::try_from(field(4)).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_at_rocketmq_positions() {
        let ck = Checkpoint {
            physic_msg_timestamp_ms: 1,
            logics_msg_timestamp_ms: 2,
            index_msg_timestamp_ms: 3,
            master_flushed_offset: 4,
            confirm_phy_offset: 0x0102_0304_0506_0708,
        };
        let page = ck.encode();
        assert_eq!(page.len(), 4096);
        assert_eq!(page[7], 1);
        assert_eq!(page[15], 2);
        assert_eq!(page[23], 3);
        assert_eq!(page[31], 4);
        assert_eq!(&page[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(page[40..].iter().all(|b| *b == 0));
        assert_eq!(Checkpoint::decode(&page), Some(ck));
        assert_eq!(Checkpoint::decode(&page[..39]), None);
        let mut negative = page.clone();
        negative[32] = 0xFF;
        assert_eq!(Checkpoint::decode(&negative).unwrap().confirm_phy_offset, 0);
    }
}
