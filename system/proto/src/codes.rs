//! Wire codes: request codes, response codes, language codes and flag bits.

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request is one-way (no response expected).
pub const FLAG_ONEWAY: i32 = 2;
/// Our protocol version, reported in every header (`MQVersion` ordinal of V5_3_3).
pub const VERSION: i32 = 479;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A code this implementation does not know; kept so it round-trips.
            Unknown(i32),
        }
        impl $name {
            /// The integer carried on the wire.
            pub fn code(self) -> i32 {
                match self { $($name::$var => $val,)* $name::Unknown(c) => c }
            }
            /// Maps a wire integer to the enum; unknown values are kept as `Unknown`.
            pub fn from_code(c: i32) -> Self {
                match c { $($val => $name::$var,)* other => $name::Unknown(other) }
            }
        }
        impl From<$name> for i32 {
            fn from(c: $name) -> i32 { c.code() }
        }
    };
}

wire_enum! {
    /// Request codes (RocketMQ `RequestCode`).
    RequestCode {
        SendMessage = 10, PullMessage = 11, QueryMessage = 12, QueryBrokerOffset = 13,
        QueryConsumerOffset = 14, UpdateConsumerOffset = 15, UpdateAndCreateTopic = 17,
        GetAllTopicConfig = 21, GetBrokerRuntimeInfo = 28, SearchOffsetByTimestamp = 29,
        GetMaxOffset = 30, GetMinOffset = 31, GetEarliestMsgStoretime = 32, ViewMessageById = 33,
        HeartBeat = 34, UnregisterClient = 35, ConsumerSendMsgBack = 36, EndTransaction = 37,
        GetConsumerListByGroup = 38, CheckTransactionState = 39, NotifyConsumerIdsChanged = 40,
        LockBatchMq = 41, UnlockBatchMq = 42, GetAllConsumerOffset = 43, GetAllDelayOffset = 45,
        PutKvConfig = 100, GetKvConfig = 101, DeleteKvConfig = 102,
        RegisterBroker = 103, UnregisterBroker = 104, GetRouteinfoByTopic = 105,
        GetBrokerClusterInfo = 106, GetTopicStatsInfo = 202, GetConsumerConnectionList = 203,
        GetAllTopicListFromNameserver = 206, GetConsumeStats = 208,
        DeleteTopicInBroker = 215, DeleteTopicInNamesrv = 216, RegisterTopicInNamesrv = 217,
        GetTopicsByCluster = 224, UpdateBrokerConfig = 25, GetBrokerConfig = 26,
        UpdateAndCreateSubscriptionGroup = 200, GetAllSubscriptionGroupConfig = 201,
        GetProducerConnectionList = 204, DeleteSubscriptionGroup = 207,
        ResetConsumerClientOffset = 220, InvokeBrokerToResetOffset = 222,
        ViewBrokerStatsData = 315, GetBrokerConsumeStats = 317, GetConsumerRunningInfo = 307, ConsumeMessageDirectly = 309,
        SendMessageV2 = 310, SendBatchMessage = 320, QueryDataVersion = 322,
        QueryAssignment = 400, BrokerHeartbeat = 904,
    }
}

wire_enum! {
    /// Response codes (RocketMQ `ResponseCode` and `RemotingSysResponseCode`).
    ResponseCode {
        Success = 0, SystemError = 1, SystemBusy = 2, RequestCodeNotSupported = 3,
        TransactionFailed = 4, FlushDiskTimeout = 10, SlaveNotAvailable = 11,
        FlushSlaveTimeout = 12, MessageIllegal = 13, ServiceNotAvailable = 14,
        VersionNotSupported = 15, NoPermission = 16, TopicNotExist = 17,
        TopicExistAlready = 18, PullNotFound = 19, PullRetryImmediately = 20,
        PullOffsetMoved = 21, QueryNotFound = 22, SubscriptionParseFailed = 23,
        SubscriptionNotExist = 24, SubscriptionNotLatest = 25, SubscriptionGroupNotExist = 26,
        InvalidParameter = 29, ConsumerNotOnline = 206, NoMessage = 208,
        BrokerNotExist = 211, FlowControl = 215,
    }
}

/// Language codes (RocketMQ `LanguageCode`), carried by name in JSON and by number in binary.
pub const LANGUAGES: [(&str, u8); 14] = [
    ("JAVA", 0),
    ("CPP", 1),
    ("DOTNET", 2),
    ("PYTHON", 3),
    ("DELPHI", 4),
    ("ERLANG", 5),
    ("RUBY", 6),
    ("OTHER", 7),
    ("HTTP", 8),
    ("GO", 9),
    ("PHP", 10),
    ("OMS", 11),
    ("RUST", 12),
    ("NODE_JS", 13),
];

/// The language code number for a name; unknown names map to OTHER (7).
pub fn language_code(name: &str) -> u8 {
    LANGUAGES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c).unwrap_or(7)
}

/// The language name for a code number; unknown numbers map to "OTHER".
pub fn language_name(code: u8) -> &'static str {
    LANGUAGES.iter().find(|(_, c)| *c == code).map(|(n, _)| *n).unwrap_or("OTHER")
}

/// Permission bits on topics and brokers.
pub mod perm {
    /// The topic may be read (consumed).
    pub const READ: i32 = 4;
    /// The topic may be written (produced to).
    pub const WRITE: i32 = 2;
    /// The default, READ | WRITE.
    pub const READ_WRITE: i32 = 6;
}

/// Pull request sysFlag bits.
pub mod pull_flag {
    /// Store the piggy-backed `commitOffset`.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// Long polling allowed.
    pub const SUSPEND: i32 = 0x2;
    /// `subscription` is present in the header.
    pub const SUBSCRIPTION: i32 = 0x4;
}

/// Message sysFlag bits.
pub mod sys_flag {
    /// Body compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// Half (prepared) transactional message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// Transaction commit.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// Transaction rollback (and the mask of the transaction type bits).
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// Born host is IPv6.
    pub const BORNHOST_V6: i32 = 0x10;
    /// Store host is IPv6.
    pub const STOREHOST_V6: i32 = 0x20;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in -5..1000 {
            assert_eq!(RequestCode::from_code(c).code(), c);
            assert_eq!(ResponseCode::from_code(c).code(), c);
        }
        assert_eq!(RequestCode::from_code(310), RequestCode::SendMessageV2);
        assert_eq!(ResponseCode::from_code(17), ResponseCode::TopicNotExist);
    }

    #[test]
    fn languages_round_trip() {
        for (n, c) in LANGUAGES {
            assert_eq!(language_code(n), c);
            assert_eq!(language_name(c), n);
        }
    }
}
