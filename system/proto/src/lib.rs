//! The Apache RocketMQ remoting protocol, sans-IO.
//!
//! Everything here is pure: bytes in, typed values out, and back. No sockets, no clocks.
//!
//! # Layout
//! - [`codes`]: request codes, response codes, language codes, flag bits.
//! - [`command`]: [`RemotingCommand`], the unit every connection carries.
//! - [`frame`]: the length-prefixed frame with JSON or ROCKETMQ binary header; [`FrameDecoder`].
//! - [`ext`]: [`ExtFields`], the small sorted map of a command's `extFields`.
//! - [`header`]: typed custom headers carried in `extFields` (send, pull, offsets, ...).
//! - [`message`]: the stored-message layout (CommitLog records, pull bodies), properties,
//!   batch bodies, message ids.
//! - [`body`]: JSON bodies: route data, heartbeat data, topic config, broker registration.
//! - [`names`]: topic and group name rules (RocketMQ's `TopicValidator`), checked at every
//!   entry point.
//!
//! # Example
//! ```
//! use rmq_proto::{RemotingCommand, codes::RequestCode, frame::{encode_frame, FrameDecoder}};
//! let cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 7)
//!     .with_ext("topic", "TopicTest");
//! let mut wire = bytes::BytesMut::new();
//! encode_frame(&cmd, &mut wire).unwrap();
//! let mut dec = FrameDecoder::default();
//! let back = dec.decode(&mut wire).unwrap().unwrap();
//! assert_eq!(back.ext("topic"), Some("TopicTest"));
//! assert_eq!(back.opaque, 7);
//! ```

pub mod body;
pub mod codes;
pub mod command;
pub mod ext;
pub mod frame;
pub mod header;
pub mod message;
pub mod names;

pub use codes::{RequestCode, ResponseCode};
pub use command::{RemotingCommand, SerializeType};
pub use ext::ExtFields;
pub use frame::{FrameDecoder, FrameError};
pub use header::{CommandHeader, HeaderError};

/// Identifies one connection of a node. Cores use it to address responses and pushes; drivers
/// map it to a real or simulated socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Java's `String.hashCode`, used for tag codes in ConsumeQueue entries and subscriptions.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(super::java_string_hash(""), 0);
        assert_eq!(super::java_string_hash("TagA"), 2598919);
        assert_eq!(super::java_string_hash("hello"), 99162322);
    }
}
