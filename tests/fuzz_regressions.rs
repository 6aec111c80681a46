//! Replays every saved fuzz input (the small corpora in `fuzz/corpus/TARGET/` and the crash
//! inputs in `fuzz/regressions/TARGET/`) through the same harness the `cargo fuzz` targets run,
//! on the stable toolchain, so a fixed crash stays fixed. See FUZZING.md.

#[allow(dead_code, clippy::all)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

/// Runs `target` over every file under `fuzz/{corpus,regressions}/{name}/`; returns how many.
fn replay(name: &str, target: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(name)) else { continue };
        let mut paths: Vec<_> = entries.map(|e| e.expect("a readable directory entry").path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            eprintln!("replaying {}", path.display());
            target(&data);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn fuzz_regressions_frame() {
    assert!(replay("frame", harness::frame) > 0, "the frame corpus is in the repository");
}

#[test]
fn fuzz_regressions_message() {
    assert!(replay("message", harness::message) > 0, "the message corpus is in the repository");
}

#[test]
fn fuzz_regressions_scenario() {
    assert!(replay("scenario", harness::scenario) > 0, "the scenario corpus is in the repository");
}

#[test]
fn fuzz_regressions_store_recovery() {
    assert!(replay("store_recovery", harness::store_recovery) > 0, "the store corpus is in the repository");
}

#[test]
fn fuzz_regressions_broker_core() {
    assert!(replay("broker_core", harness::broker_core) > 0, "the broker corpus is in the repository");
}

#[test]
fn fuzz_regressions_acl() {
    assert!(replay("acl", harness::acl) > 0, "the acl corpus has seeds");
}
