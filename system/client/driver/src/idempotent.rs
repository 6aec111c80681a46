//! Idempotent consumption over a real embedded database ([redb]): the strong variant of the
//! brief's helper. The dedup key (message id + business key) is recorded in the same write
//! transaction as the business effect, and consulted before it, so a message delivered twice
//! (a producer's retry, a consumer that crashed before committing its offset, a rebalance) has
//! its effect applied once. The rule itself is [`rmq_client_core::idempotent::process_once`],
//! the same code the `exactly-once` model checks (`mqsim check exactly-once`).
//!
//! The weak variant, [`ExpiringClaims`], keeps keys with an expiry in memory: cheaper, no
//! transaction with the effect, and not exactly-once (the model's `weak-dedup` variant shows
//! how it fails).
//!
//! ```no_run
//! use rmq_client::idempotent::{IdempotentDb, Outcome};
//! use redb::{ReadableTable, TableDefinition};
//! const BALANCES: TableDefinition<&str, i64> = TableDefinition::new("balances");
//! # fn f(msg: &rmq_client::MessageExt) -> Result<(), redb::Error> {
//! let db = IdempotentDb::open(std::path::Path::new("/var/lib/app/consumer.redb"))?;
//! let outcome = db.process(&msg.msg_id(), "credit", |txn| {
//!     let mut t = txn.open_table(BALANCES)?;
//!     let now = t.get("alice")?.map_or(0, |v| v.value());
//!     t.insert("alice", now + 10)?;
//!     Ok::<(), redb::Error>(())
//! })?;
//! assert!(matches!(outcome, Outcome::Applied | Outcome::Duplicate));
//! # Ok(()) }
//! ```

// redb's own error type is large; the helper hands it back unchanged so that an effect's
// `?` on redb calls keeps working.
#![allow(clippy::result_large_err)]

use std::marker::PhantomData;
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use rmq_client_core::idempotent::{dedup_key, process_once, DedupTxn};

pub use rmq_client_core::idempotent::{ExpiringClaims, Outcome};

/// The table of consumed keys (key → 1).
pub const CONSUMED_KEYS: TableDefinition<&str, u8> = TableDefinition::new("rmq_consumed_keys");

/// A consumer's database with its consumed keys.
#[derive(Debug)]
pub struct IdempotentDb {
    db: Database,
}

/// The dedup rule's view of one redb write transaction.
struct Txn<'a, E> {
    txn: &'a WriteTransaction,
    _err: PhantomData<E>,
}

impl<E: From<redb::Error>> DedupTxn for Txn<'_, E> {
    type Error = E;

    fn is_recorded(&mut self, key: &str) -> Result<bool, E> {
        let table = self.txn.open_table(CONSUMED_KEYS).map_err(redb::Error::from)?;
        let found = table.get(key).map_err(redb::Error::from)?.is_some();
        Ok(found)
    }

    fn record(&mut self, key: &str) -> Result<(), E> {
        let mut table = self.txn.open_table(CONSUMED_KEYS).map_err(redb::Error::from)?;
        table.insert(key, 1).map_err(redb::Error::from)?;
        Ok(())
    }
}

impl IdempotentDb {
    /// Opens (creating if absent) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        Ok(IdempotentDb { db: Database::create(path)? })
    }

    /// The database, for the application's own reads.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Applies `effect` for message `msg_id` and `business_key` once: in one write
    /// transaction, a recorded key is a [`Outcome::Duplicate`] (nothing runs); otherwise
    /// `effect` runs on the transaction, the key is recorded, and both commit together. An
    /// error rolls both back (the message can be retried); a crash before the commit leaves
    /// neither.
    pub fn process<E: From<redb::Error>>(
        &self,
        msg_id: &str,
        business_key: &str,
        effect: impl FnOnce(&WriteTransaction) -> Result<(), E>,
    ) -> Result<Outcome, E> {
        let write = self.db.begin_write().map_err(redb::Error::from)?;
        let key = dedup_key(msg_id, business_key);
        let mut txn = Txn::<E> { txn: &write, _err: PhantomData };
        let outcome = process_once(&mut txn, &key, |t| effect(t.txn))?;
        match outcome {
            Outcome::Applied => write.commit().map_err(redb::Error::from)?,
            Outcome::Duplicate => write.abort().map_err(redb::Error::from)?,
        }
        Ok(outcome)
    }

    /// Whether `msg_id` + `business_key` was consumed.
    pub fn is_consumed(&self, msg_id: &str, business_key: &str) -> Result<bool, redb::Error> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(CONSUMED_KEYS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(dedup_key(msg_id, business_key).as_str())?.is_some())
    }
}
