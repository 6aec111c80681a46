//! Client errors: one type per operation.

use rmq_rt::RpcError;

/// Why a route, pull, offset or admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No NameServer answered.
    #[error("no name server reachable ({addrs}): {last}")]
    NameServerUnreachable {
        /// Addresses tried.
        addrs: String,
        /// Last error.
        last: String,
    },
    /// The topic has no route.
    #[error("no route for topic {topic}")]
    NoRoute {
        /// Topic.
        topic: String,
    },
    /// The broker is not in any known route.
    #[error("broker {broker_name} has no known master address")]
    NoBrokerAddr {
        /// Broker name.
        broker_name: String,
    },
    /// The request did not complete.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The server answered with an error code.
    #[error("server answered code {code}: {remark}")]
    Server {
        /// Response code.
        code: i32,
        /// Remark.
        remark: String,
    },
    /// A body did not decode.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// Configuration is unusable.
    #[error("bad configuration: {0}")]
    Config(String),
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message is refused before sending (empty topic, too large...).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// No writable queue for the topic.
    #[error("no writable queue for topic {topic}: {cause}")]
    NoRoute {
        /// Topic.
        topic: String,
        /// Why.
        cause: String,
    },
    /// The broker refused the message with a non-retryable code.
    #[error("broker {broker} refused the message: code {code}: {remark}")]
    Broker {
        /// Broker name.
        broker: String,
        /// Response code.
        code: i32,
        /// Remark.
        remark: String,
    },
    /// Every attempt failed.
    #[error("send failed after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        last: String,
    },
}
