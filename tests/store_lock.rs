//! Goal: the store is one broker's alone. RocketMQ holds `storePathRootDir/lock`; a second
//! broker on a store in use must refuse to start (two writers on one CommitLog lost 5,211
//! acknowledged messages in the probe of issue 7), naming the lock file and its holder.

// tests/common drives child processes from plain threads; the determinism rules are for cores
// and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use common::in_process_broker as opts;
use rmq_rt::RealEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_a_used_store_refuses_to_start_naming_the_holder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = rmq_broker::start(RealEnv::default(), opts(tmp.path())).await.expect("first broker starts");
    let err = match rmq_broker::start(RealEnv::default(), opts(tmp.path())).await {
        Ok(_) => panic!("a second broker started on a store in use"),
        Err(e) => e.to_string(),
    };
    let lock = tmp.path().join("lock");
    assert!(err.contains(&lock.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    first.shutdown().await;
    // Once the first broker is gone the store is free again.
    let again =
        rmq_broker::start(RealEnv::default(), opts(tmp.path())).await.expect("the store is free after shutdown");
    again.shutdown().await;
}
