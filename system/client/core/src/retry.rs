//! Which send outcomes are retried ([Prod] defaults: 2 retries for sync sends).

use rmq_proto::ResponseCode;

/// Default retries after the first attempt for synchronous sends.
pub const RETRY_TIMES_WHEN_SEND_FAILED: u32 = 2;

/// True when a broker answer with this code should be retried on another broker.
/// FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT and SLAVE_NOT_AVAILABLE mean *stored*: retrying
/// would duplicate, so they are not retried.
pub fn is_retryable(code: ResponseCode) -> bool {
    matches!(
        code,
        ResponseCode::TopicNotExist
            | ResponseCode::ServiceNotAvailable
            | ResponseCode::SystemError
            | ResponseCode::SystemBusy
            | ResponseCode::NoPermission
    ) || matches!(code, ResponseCode::Unknown(204 | 205 | 1500))
}

/// The send status a response code maps to, if it means the message was stored.
pub fn stored_status(code: ResponseCode) -> Option<SendStatus> {
    match code {
        ResponseCode::Success => Some(SendStatus::SendOk),
        ResponseCode::FlushDiskTimeout => Some(SendStatus::FlushDiskTimeout),
        ResponseCode::FlushSlaveTimeout => Some(SendStatus::FlushSlaveTimeout),
        ResponseCode::SlaveNotAvailable => Some(SendStatus::SlaveNotAvailable),
        _ => None,
    }
}

/// Outcome of a send that reached the broker's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SendStatus {
    /// Stored, and flushed/replicated as configured.
    SendOk,
    /// Stored; the SYNC_FLUSH did not confirm in time.
    FlushDiskTimeout,
    /// Stored on the master; the slave did not confirm in time.
    FlushSlaveTimeout,
    /// Stored on the master; no slave available.
    SlaveNotAvailable,
}

impl SendStatus {
    /// RocketMQ's spelling (`SEND_OK`, `FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`,
    /// `SLAVE_NOT_AVAILABLE`), as its tools print it.
    pub fn name(self) -> &'static str {
        match self {
            SendStatus::SendOk => "SEND_OK",
            SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        }
    }
}

impl std::fmt::Display for SendStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_spelled_as_rocketmq_spells_them() {
        let names: Vec<String> = [
            SendStatus::SendOk,
            SendStatus::FlushDiskTimeout,
            SendStatus::FlushSlaveTimeout,
            SendStatus::SlaveNotAvailable,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(names, ["SEND_OK", "FLUSH_DISK_TIMEOUT", "FLUSH_SLAVE_TIMEOUT", "SLAVE_NOT_AVAILABLE"]);
    }

    #[test]
    fn stored_codes_are_never_retried() {
        for code in [0, 10, 11, 12] {
            let c = ResponseCode::from_code(code);
            assert!(stored_status(c).is_some());
            assert!(!is_retryable(c));
        }
        assert!(is_retryable(ResponseCode::SystemBusy));
        assert!(!is_retryable(ResponseCode::MessageIllegal));
    }
}
