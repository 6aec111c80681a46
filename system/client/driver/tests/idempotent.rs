//! The strong idempotent-consumption helper over a real redb file: an effect is applied once
//! per message id + business key, a failed or interrupted effect leaves nothing behind, and the
//! record survives reopening the database (a consumer restart).

#![allow(clippy::result_large_err)]

use redb::{ReadableTable, TableDefinition};
use rmq_client::idempotent::{IdempotentDb, Outcome};

const CREDITS: TableDefinition<&str, i64> = TableDefinition::new("credits");

fn credit(db: &IdempotentDb, msg_id: &str, fail: bool) -> Result<Outcome, redb::Error> {
    db.process(msg_id, "credit", |txn| {
        let mut t = txn.open_table(CREDITS)?;
        let now = t.get("alice")?.map_or(0, |v| v.value());
        t.insert("alice", now + 10)?;
        if fail {
            // A business failure after the write: the whole transaction must roll back.
            return Err(redb::Error::Corrupted("business rule refused".into()));
        }
        Ok(())
    })
}

fn balance(db: &IdempotentDb) -> i64 {
    let read = db.database().begin_read().unwrap();
    match read.open_table(CREDITS) {
        Ok(t) => t.get("alice").unwrap().map_or(0, |v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn each_message_is_applied_once_across_failures_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consumer.redb");
    let db = IdempotentDb::open(&path).unwrap();

    assert!(credit(&db, "MSG-1", true).is_err());
    assert_eq!(balance(&db), 0, "a failed effect is rolled back");
    assert!(!db.is_consumed("MSG-1", "credit").unwrap(), "and its key with it: the retry will apply it");

    assert_eq!(credit(&db, "MSG-1", false).unwrap(), Outcome::Applied);
    assert_eq!(credit(&db, "MSG-1", false).unwrap(), Outcome::Duplicate, "a redelivery");
    assert_eq!(balance(&db), 10);

    // A panic inside the effect (a crash before the commit) leaves nothing either.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.process("MSG-2", "credit", |txn| -> Result<(), redb::Error> {
            txn.open_table(CREDITS)?.insert("alice", 1_000)?;
            panic!("power cut before the commit");
        })
    }));
    assert!(crashed.is_err());
    drop(db);

    // The consumer restarts: what committed is there, what did not is not.
    let db = IdempotentDb::open(&path).unwrap();
    assert_eq!(balance(&db), 10);
    assert!(db.is_consumed("MSG-1", "credit").unwrap());
    assert!(!db.is_consumed("MSG-2", "credit").unwrap());
    assert_eq!(credit(&db, "MSG-1", false).unwrap(), Outcome::Duplicate);
    assert_eq!(credit(&db, "MSG-2", false).unwrap(), Outcome::Applied);
    // The same message with another business key is another effect.
    assert_eq!(db.process("MSG-1", "audit", |_| Ok::<(), redb::Error>(())).unwrap(), Outcome::Applied);
    assert_eq!(balance(&db), 20);
}
