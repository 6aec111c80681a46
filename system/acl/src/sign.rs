//! Request signatures, as RocketMQ's `AclClientRPCHook` computes them.
//!
//! The signed content is the values of the request's ext fields in key order (without
//! `Signature` and `_UNIQUE_KEY_QUERY`), concatenated as UTF-8, followed by the body bytes. The
//! signature is HMAC-SHA1 of that content keyed with the secret key's UTF-8 bytes, in standard
//! base64 with padding, carried in the `Signature` ext field next to `AccessKey`.
//!
//! Keys are ordered by bytes here and by UTF-16 code units in Java's `TreeMap`; the two orders
//! agree for every key outside U+E000..U+FFFF, and every RocketMQ header key is ASCII.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rmq_proto::RemotingCommand;
use sha1::Sha1;

/// Ext field naming the account (`SessionCredentials.ACCESS_KEY`).
pub const ACCESS_KEY: &str = "AccessKey";
/// Ext field carrying the signature (`SessionCredentials.SIGNATURE`).
pub const SIGNATURE: &str = "Signature";
/// Ext field carrying an optional security token (`SessionCredentials.SECURITY_TOKEN`); signed
/// like any other field, not otherwise used (as in RocketMQ's plain ACL).
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// Ext field RocketMQ's server leaves out of the signed content (`MixAll.UNIQUE_MSG_QUERY_FLAG`).
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

type HmacSha1 = Hmac<Sha1>;

/// The bytes a request's signature covers.
pub fn signed_content(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmd.body.len() + 64);
    for (k, v) in &cmd.ext_fields {
        if k != SIGNATURE && k != UNIQUE_KEY_QUERY {
            out.extend_from_slice(v.as_bytes());
        }
    }
    out.extend_from_slice(&cmd.body);
    out
}

/// HMAC-SHA1 of `content` under `secret_key`, base64 (`AclUtils.calSignature`).
pub fn signature(secret_key: &str, content: &[u8]) -> String {
    STANDARD.encode(mac(secret_key, content).finalize().into_bytes())
}

/// Whether `claimed` (base64) is the signature of `content` under `secret_key`. The comparison
/// of the MAC is constant-time.
pub fn verify(secret_key: &str, content: &[u8], claimed: &str) -> bool {
    match STANDARD.decode(claimed.trim()) {
        Ok(tag) => mac(secret_key, content).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

fn mac(secret_key: &str, content: &[u8]) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(content);
    mac
}

/// An account's access key and secret key, used to sign requests.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The access key (public: it travels in every request).
    pub access_key: String,
    secret_key: String,
}

impl Credentials {
    /// Credentials from an access key and a secret key.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials { access_key: access_key.into(), secret_key: secret_key.into() }
    }

    /// The secret key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Signs a request in place: sets `AccessKey`, then `Signature` over every other ext field
    /// and the body. Call it last, once the header and body are final (the opaque and flags
    /// are not signed).
    pub fn sign(&self, cmd: &mut RemotingCommand) {
        cmd.ext_fields.remove(SIGNATURE);
        cmd.ext_fields.insert(ACCESS_KEY.into(), self.access_key.clone());
        let sig = signature(&self.secret_key, &signed_content(cmd));
        cmd.ext_fields.insert(SIGNATURE.into(), sig);
    }

    /// [`Self::sign`], by value.
    pub fn signed(&self, mut cmd: RemotingCommand) -> RemotingCommand {
        self.sign(&mut cmd);
        cmd
    }
}

/// Never prints the secret key.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).field("secret_key", &"<redacted>").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rmq_proto::codes::RequestCode;

    /// Computed independently with Python's hmac/hashlib/base64:
    /// `base64.b64encode(hmac.new(b"12345678", b"rocketmqTBW102" + b"hi", hashlib.sha1).digest())`
    /// where the content is the values of {AccessKey: rocketmq, topic: TBW102} in key order,
    /// then the body `hi`.
    #[test]
    fn signature_matches_an_independent_hmac_sha1() {
        let mut cmd =
            RemotingCommand::request(RequestCode::SendMessage, 1).with_ext("topic", "TBW102").with_body(&b"hi"[..]);
        Credentials::new("rocketmq", "12345678").sign(&mut cmd);
        assert_eq!(signed_content(&cmd), b"rocketmqTBW102hi");
        assert_eq!(cmd.ext(SIGNATURE), Some(PYTHON_VECTOR));
        assert!(verify("12345678", b"rocketmqTBW102hi", PYTHON_VECTOR));
    }

    const PYTHON_VECTOR: &str = "vHLIkhERJzrvAcQ6Cb88HbTuhnY=";

    #[test]
    fn the_server_side_excludes_signature_and_unique_key_query() {
        let cmd = RemotingCommand::request(RequestCode::QueryMessage, 1)
            .with_ext("b", "2")
            .with_ext("a", "1")
            .with_ext(SIGNATURE, "x")
            .with_ext(UNIQUE_KEY_QUERY, "true")
            .with_body(&b"!"[..]);
        assert_eq!(signed_content(&cmd), b"12!");
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let s = format!("{:?}", Credentials::new("ak", "very-secret"));
        assert!(s.contains("ak") && !s.contains("very-secret"), "{s}");
    }

    proptest! {
        #[test]
        fn signed_requests_verify_and_any_change_breaks_them(
            fields in proptest::collection::btree_map("[a-zA-Z]{1,8}", "[ -~]{0,12}", 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            secret in "[ -~]{1,20}",
            flip in any::<usize>(),
        ) {
            let mut cmd = RemotingCommand::request(RequestCode::SendMessageV2, 1).with_body(body);
            cmd.ext_fields.extend(fields);
            let creds = Credentials::new("ak-0001", secret.clone());
            creds.sign(&mut cmd);
            let sig = cmd.ext(SIGNATURE).unwrap().to_string();
            prop_assert!(verify(&secret, &signed_content(&cmd), &sig));
            let other_secret = format!("{secret}x");
            prop_assert!(!verify(&other_secret, &signed_content(&cmd), &sig));
            let mut content = signed_content(&cmd);
            let i = flip % content.len();
            content[i] ^= 1;
            prop_assert!(!verify(&secret, &content, &sig));
        }

        #[test]
        fn verify_never_panics(claimed in ".{0,64}") {
            let _ = verify("k", b"content", &claimed);
        }
    }
}
