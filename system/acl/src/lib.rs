//! RocketMQ ACL 1.0 ("plain ACL"): who may send which request to a broker or NameServer.
//!
//! A request names an account in its `AccessKey` ext field and carries a `Signature`: HMAC-SHA1,
//! keyed with the account's secret key, over the values of its other ext fields in key order
//! followed by its body ([`sign`]). A server with `aclEnable=true` checks every request against
//! a [`PlainAcl`] loaded from `plain_acl.yml` ([`file`](mod@file)): a peer matching a global white
//! address passes; otherwise the account must exist, the signature must match (unless the peer
//! matches the account's own white address), and the account must hold the permissions the
//! request needs ([`check`], with the table of request codes). A refused request is answered
//! NO_PERMISSION (16) with the reason as remark.
//!
//! Pure: no clock, no randomness, no I/O except [`PlainAcl::load`], which reads the file once at
//! start.
//!
//! # Layout
//! - [`perm`]: `DENY`, `PUB`, `SUB`, `PUB|SUB`.
//! - [`addr`]: white remote address patterns (`*`, `192.168.0.{1,2}`, `192.168.1.1-5`, ...).
//! - [`file`](mod@file): the `plain_acl.yml` model and its parser.
//! - [`sign`]: the signed content, the signature, [`Credentials`] that sign requests.
//! - [`check`]: request code → needed permissions, and [`PlainAcl::check`].
//!
//! # Calling contract
//! ```
//! use rmq_acl::{Credentials, PlainAcl, Denied};
//! use rmq_proto::{RemotingCommand, codes::RequestCode};
//!
//! let acl = PlainAcl::parse("
//! accounts:
//!   - accessKey: orders-app
//!     secretKey: orders-secret
//!     defaultTopicPerm: DENY
//!     topicPerms: [Orders=PUB]
//! ").unwrap();
//! let peer = Some("10.0.0.5".parse().unwrap());
//! let send = RemotingCommand::request(RequestCode::SendMessage, 1)
//!     .with_ext("producerGroup", "pg").with_ext("topic", "Orders").with_ext("queueId", "0")
//!     .with_body(&b"hello"[..]);
//! // Unsigned: refused.
//! assert!(matches!(acl.check(peer, &send), Err(Denied::NoAccessKey { .. })));
//! // Signed by the client (what an RPC hook does just before the request is written):
//! let signed = Credentials::new("orders-app", "orders-secret").signed(send);
//! assert!(acl.check(peer, &signed).is_ok());
//! ```

pub mod addr;
pub mod check;
pub mod file;
pub mod perm;
pub mod sign;

pub use addr::AddrPattern;
pub use check::{Allowed, Denied};
pub use file::{from_settings, Account, AclFileError, AclParseError, AclSettingError, PlainAcl};
pub use perm::Perm;
pub use sign::Credentials;
