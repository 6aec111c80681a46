//! Idempotent consumption (the brief's helper). RocketMQ delivers at least once: a producer's
//! retry stores a message twice, a consumer that crashes before committing its offset gets
//! messages again. A consumer whose effect must happen once keys each message by its message
//! id plus a business key, and:
//! - **strong**: in the same database transaction as the business effect, checks whether the
//!   key was recorded (skip) or applies the effect and records the key ([`process_once`]); a
//!   crash before the commit leaves neither, a crash after leaves both. Exactly once.
//! - **weak**: claims the key with an expiry before processing ([`ExpiringClaims`], RocketMQ's
//!   "SETNX with a TTL" advice) and releases it if processing fails. Cheap, and catches
//!   duplicates that arrive within the expiry, but a claim is not the effect: a crash between
//!   the two, a claim store that forgets (memory, a restarted Redis), or a duplicate after the
//!   expiry applies the effect twice.
//!
//! The transaction is the caller's (the client library's embedded-database helper, or a model's
//! in-memory database): this module holds the decision, once, for both.

use std::collections::BTreeMap;

/// The key a message is deduplicated by: its message id and the business key.
pub fn dedup_key(msg_id: &str, business_key: &str) -> String {
    format!("{msg_id}#{business_key}")
}

/// One open transaction of the consumer's database, seen by the dedup rule.
pub trait DedupTxn {
    /// The database's error.
    type Error;
    /// Whether `key` was recorded by a committed transaction (or earlier in this one).
    fn is_recorded(&mut self, key: &str) -> Result<bool, Self::Error>;
    /// Records `key` in this transaction.
    fn record(&mut self, key: &str) -> Result<(), Self::Error>;
}

/// What [`process_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The effect was applied and the key recorded (both commit together).
    Applied,
    /// The key was recorded before: the effect was not applied again.
    Duplicate,
}

/// Strong idempotence, inside one transaction: skips a recorded key, otherwise applies
/// `effect` and records the key. The caller commits on `Ok` and rolls back on `Err` (the
/// message is then retried, and nothing of it was kept).
pub fn process_once<T: DedupTxn>(
    txn: &mut T,
    key: &str,
    effect: impl FnOnce(&mut T) -> Result<(), T::Error>,
) -> Result<Outcome, T::Error> {
    if txn.is_recorded(key)? {
        return Ok(Outcome::Duplicate);
    }
    effect(txn)?;
    txn.record(key)?;
    Ok(Outcome::Applied)
}

/// Weak idempotence: keys claimed until an expiry (in memory; a Redis `SET key NX PX ttl`
/// behaves the same way).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ExpiringClaims {
    ttl_ms: u64,
    /// Key → expiry time (ms).
    claims: BTreeMap<String, u64>,
}

impl ExpiringClaims {
    /// Claims that last `ttl_ms`.
    pub fn new(ttl_ms: u64) -> Self {
        ExpiringClaims { ttl_ms, claims: BTreeMap::new() }
    }

    /// Claims `key` at `now_ms`: false if a live claim holds it (a duplicate: skip it).
    pub fn try_claim(&mut self, now_ms: u64, key: &str) -> bool {
        self.claims.retain(|_, until| *until > now_ms);
        if self.claims.contains_key(key) {
            return false;
        }
        self.claims.insert(key.to_string(), now_ms.saturating_add(self.ttl_ms));
        true
    }

    /// Processing failed: the key may be processed again.
    pub fn release(&mut self, key: &str) {
        self.claims.remove(key);
    }

    /// Live claims.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// True when nothing is claimed.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A database as a value: a transaction works on a copy that replaces it on commit.
    #[derive(Debug, Clone, Default)]
    struct Db {
        keys: BTreeSet<String>,
        effects: u32,
    }

    impl DedupTxn for Db {
        type Error = &'static str;
        fn is_recorded(&mut self, key: &str) -> Result<bool, Self::Error> {
            Ok(self.keys.contains(key))
        }
        fn record(&mut self, key: &str) -> Result<(), Self::Error> {
            self.keys.insert(key.to_string());
            Ok(())
        }
    }

    fn deliver(db: &mut Db, key: &str, fail: bool) -> Result<Outcome, &'static str> {
        let mut txn = db.clone();
        let out = process_once(&mut txn, key, |t| {
            t.effects += 1;
            if fail {
                Err("business failure")
            } else {
                Ok(())
            }
        })?;
        *db = txn; // commit
        Ok(out)
    }

    #[test]
    fn a_key_is_applied_once_and_a_failed_attempt_leaves_nothing() {
        let mut db = Db::default();
        let k = dedup_key("AC11000100002A9F0000000000000000", "order-7");
        assert_eq!(deliver(&mut db, &k, true), Err("business failure"));
        assert_eq!((db.effects, db.keys.len()), (0, 0), "rolled back");
        assert_eq!(deliver(&mut db, &k, false), Ok(Outcome::Applied));
        assert_eq!(deliver(&mut db, &k, false), Ok(Outcome::Duplicate));
        assert_eq!(db.effects, 1);
        assert_eq!(deliver(&mut db, &dedup_key("other", "order-7"), false), Ok(Outcome::Applied));
        assert_eq!(db.effects, 2);
    }

    #[test]
    fn claims_expire_and_can_be_released() {
        let mut c = ExpiringClaims::new(1_000);
        assert!(c.try_claim(0, "k"));
        assert!(!c.try_claim(999, "k"), "a live claim holds");
        assert!(c.try_claim(1_000, "k"), "expired at its deadline");
        c.release("k");
        assert!(c.is_empty());
        assert!(c.try_claim(1_001, "k"));
        assert_eq!(c.len(), 1);
    }
}
