//! Retention (RocketMQ's CleanCommitLogService + CleanConsumeQueueService): every
//! cleanResourceInterval, at a `deleteWhen` hour or whenever the disk is fuller than
//! diskMaxUsedSpaceRatio, delete CommitLog segments older than fileReservedTime; past
//! diskSpaceCleanForciblyRatio delete the oldest regardless of age; past
//! diskSpaceWarningLevelRatio refuse sends (SERVICE_NOT_AVAILABLE) until space returns. The
//! ConsumeQueues and the index follow the CommitLog, and consumer offsets below a queue's new
//! min move up to it. The segment being written is never deleted.

use rmq_store::Directory;

use crate::{BrokerCore, Event};

/// Segments deleted per pass at most (RocketMQ paces deletion the same way, so one pass
/// never stalls the event loop on a backlog of unlinks).
pub const SEGMENTS_PER_PASS_MAX: u32 = 10;

const HOUR_MS: u64 = 3_600_000;

impl<D: Directory> BrokerCore<D> {
    /// One retention pass at `now_ms` (wall-clock epoch milliseconds in production).
    pub(crate) fn clean_files(&mut self, now_ms: u64) {
        let ratio = self.check_disk_space();
        let percent = ratio * 100.0;
        let hour = ((now_ms / HOUR_MS) % 24) as u8;
        let time_up = self.config.delete_when_hours.contains(&hour);
        let space_short = percent > f64::from(self.config.disk_max_used_space_ratio);
        if !time_up && !space_short {
            return;
        }
        let force = percent > f64::from(self.config.disk_clean_forcibly_ratio);
        let expired_before = now_ms.saturating_sub(self.config.file_reserved_ms) as i64;
        match self.store.delete_expired_files(expired_before, force, SEGMENTS_PER_PASS_MAX) {
            Ok(cleaned) if cleaned.commit_log_segments > 0 => {
                let store = &self.store;
                let offsets_raised = self.offsets.raise_to(|topic, qid| store.min_queue_offset(topic, qid));
                tracing::info!(
                    deleted = cleaned.commit_log_segments,
                    queue_files = cleaned.queue_segments,
                    min_offset = cleaned.commit_log_min_offset,
                    offsets_raised,
                    forced = force,
                    "retention deleted expired CommitLog segments"
                );
                self.event(|| Event::FilesDeleted {
                    commit_log_segments: cleaned.commit_log_segments,
                    queue_segments: cleaned.queue_segments,
                    commit_log_min_offset: cleaned.commit_log_min_offset,
                    offsets_raised,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention could not delete a file; retrying next pass"),
        }
    }

    /// Measures the disk and sets or clears the refusal of sends; returns the share in use
    /// (0 when it cannot be measured).
    fn check_disk_space(&mut self) -> f64 {
        let ratio = self.store.used_space_ratio().unwrap_or(0.0);
        let limit = f64::from(self.config.disk_warning_level_ratio);
        let full = ratio * 100.0 > limit;
        if full && self.disk_full.is_none() {
            tracing::warn!(used_percent = ratio * 100.0, "disk nearly full: refusing sends");
        } else if !full && self.disk_full.is_some() {
            tracing::info!(used_percent = ratio * 100.0, "disk space returned: taking sends again");
        }
        self.disk_full = full.then(|| {
            format!(
                "the broker's disk is full: {:.1}% used, above diskSpaceWarningLevelRatio {limit:.0}%",
                ratio * 100.0
            )
        });
        ratio
    }

    /// Why sends are refused for lack of disk space, if they are. While refusing, every send
    /// measures again, so sends resume as soon as space returns.
    pub(crate) fn disk_full(&mut self) -> Option<&str> {
        if self.disk_full.is_some() {
            self.check_disk_space();
        }
        self.disk_full.as_deref()
    }
}
