//! Fuzz harnesses: one function per target, each taking the raw fuzz input and panicking only on
//! a bug. The `cargo fuzz` targets in `fuzz_targets/` call them, and the root package's
//! `tests/fuzz_regressions.rs` includes this file to replay every saved corpus and crash input
//! on the stable toolchain.
//!
//! # Layout
//! - [`frame`]: frame decoder, JSON and ROCKETMQ header codecs, typed headers.
//! - [`message`]: stored-message and batch decoders, route/heartbeat/register JSON bodies.
//! - [`scenario`]: the simulator's scenario parser.
//! - [`store_recovery`]: `MessageStore::open` over arbitrary segment and checkpoint bytes.
//! - [`broker_core`]: `BrokerCore` over an in-memory store fed a byte-driven command sequence.
//! - [`acl`]: `plain_acl.yml` parsing, address patterns, and the request check and signature
//!   verification over arbitrary frames.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use rmq_broker_core::{BrokerConfig, BrokerCore, Output};
use rmq_proto::body::{self, HeartbeatData, RegisterBrokerBody, TopicConfigSerializeWrapper, TopicRouteData};
use rmq_proto::frame::{decode_frame_body, encode_to_bytes};
use rmq_proto::header::{
    ConsumerSendMsgBackRequestHeader, CreateTopicRequestHeader, PullMessageRequestHeader, RegisterBrokerRequestHeader,
    SendMessageRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rmq_proto::message::{decode_batch, decode_message, decode_messages, encode_batch, BatchItem};
use rmq_proto::{ConnId, FrameDecoder, RemotingCommand};
use rmq_store::{Directory, MemDirectory, MemSegment, MessageStore, Segment, StoreConfig, StoreError};

/// Largest frame the frame target accepts (keeps allocations small).
const FUZZ_FRAME_MAX_BYTES: usize = 64 * 1024;

/// Decodes every typed header the broker and NameServer read; errors are fine, panics are not.
fn decode_typed_headers(cmd: &RemotingCommand) {
    let _ = cmd.decode_header::<SendMessageRequestHeader>();
    let _ = cmd.decode_header::<PullMessageRequestHeader>();
    let _ = cmd.decode_header::<UpdateConsumerOffsetRequestHeader>();
    let _ = cmd.decode_header::<CreateTopicRequestHeader>();
    let _ = cmd.decode_header::<ConsumerSendMsgBackRequestHeader>();
    let _ = cmd.decode_header::<RegisterBrokerRequestHeader>();
    let _ = cmd.request_code();
    let _ = cmd.response_code();
}

/// Frames: the streaming decoder over the input, then the body decoder on the input itself; each
/// decoded command has its typed headers parsed and is re-encoded and decoded again.
pub fn frame(data: &[u8]) {
    let mut decoder = FrameDecoder { max_frame_bytes: FUZZ_FRAME_MAX_BYTES };
    let mut buf = BytesMut::from(data);
    let mut commands = Vec::new();
    while let Ok(Some(cmd)) = decoder.decode(&mut buf) {
        commands.push(cmd);
    }
    if let Ok(cmd) = decode_frame_body(Bytes::copy_from_slice(data)) {
        commands.push(cmd);
    }
    for cmd in commands {
        decode_typed_headers(&cmd);
        if let Ok(encoded) = encode_to_bytes(&cmd) {
            let mut again = BytesMut::from(&encoded[..]);
            let decoded = FrameDecoder { max_frame_bytes: usize::MAX }
                .decode(&mut again)
                .expect("a frame we encoded decodes")
                .expect("a frame we encoded is whole");
            assert_eq!(decoded.code, cmd.code, "the code survives a round trip");
            assert_eq!(decoded.body, cmd.body, "the body survives a round trip");
        }
    }
}

/// Stored messages and batches, then the JSON bodies.
pub fn message(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let _ = decode_message(&bytes, true);
    let _ = decode_message(&bytes, false);
    let _ = decode_messages(&bytes);
    if let Ok(items) = decode_batch(&bytes) {
        // What decodes re-encodes to something that decodes to the same items.
        let again = decode_batch(&Bytes::from(encode_batch(&items))).expect("a batch we encoded decodes");
        assert_eq!(again.len(), items.len());
        let _: Vec<&BatchItem> = items.iter().collect();
    }
    let _ = body::from_json::<TopicRouteData>(data);
    let _ = body::from_json::<HeartbeatData>(data);
    let _ = body::from_json::<RegisterBrokerBody>(data);
    let _ = body::from_json::<TopicConfigSerializeWrapper>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = body::quote_numeric_keys(text);
        let _ = rmq_proto::message::decode_properties(text);
        let _ = rmq_proto::message::parse_offset_msg_id(text);
    }
}

/// The ACL file used when the input's own does not parse: the repository's example.
const ACL_EXAMPLE: &str = include_str!("../../examples/plain_acl.yml");

/// Access control: the input is a `plain_acl.yml` text, a NUL byte, then a frame body. The
/// text is parsed (and each of its lines tried as an address pattern); the frame's command is
/// checked against that ACL (or the example's) from peers drawn from the input, and signed
/// and verified again with an account's key. Errors are fine, panics are not, and a command
/// signed with an account's own key is never refused for its signature.
pub fn acl(data: &[u8]) {
    let (text, frame) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    for line in text.lines() {
        let _ = rmq_acl::AddrPattern::parse(line.trim());
    }
    let parsed = rmq_acl::PlainAcl::parse(&text);
    let acl = match parsed {
        Ok(acl) => acl,
        Err(_) => rmq_acl::PlainAcl::parse(ACL_EXAMPLE).expect("the example ACL parses"),
    };
    let Ok(mut cmd) = decode_frame_body(Bytes::copy_from_slice(frame)) else { return };
    let peers: Vec<Option<std::net::IpAddr>> = vec![
        None,
        Some([127, 0, 0, 1].into()),
        Some([frame.first().copied().unwrap_or(10), frame.get(1).copied().unwrap_or(0), 0, 1].into()),
        Some(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
    ];
    for peer in &peers {
        let _ = acl.check(*peer, &cmd);
    }
    // Signed with an account's own key, a command is never refused for its signature.
    if let Some(account) = acl.accounts.values().next() {
        let creds = rmq_acl::Credentials::new(account.access_key.as_str(), account.secret_key.as_str());
        creds.sign(&mut cmd);
        let content = rmq_acl::sign::signed_content(&cmd);
        let claimed = cmd.ext("Signature").unwrap_or_default().to_string();
        assert!(rmq_acl::sign::verify(&account.secret_key, &content, &claimed), "a fresh signature verifies");
        for peer in &peers {
            if let Err(denied) = acl.check(*peer, &cmd) {
                assert!(!matches!(denied, rmq_acl::Denied::BadSignature { .. }), "signed with its own key: {denied:?}");
            }
        }
    }
}

/// The simulator's scenario parser.
pub fn scenario(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rmq_sim::scenario::parse(text);
    }
}

/// A directory whose segments keep the bytes they were seeded with (unlike [`MemDirectory`],
/// which hands out zeroed segments); small files live in a [`MemDirectory`].
#[derive(Debug, Default)]
pub struct SeededDir {
    /// Config files and the checkpoint.
    small: MemDirectory,
    /// Segment contents by path, possibly shorter than the segment (the rest is zero).
    segments: BTreeMap<String, Vec<u8>>,
}

impl Directory for SeededDir {
    type Seg = MemSegment;

    fn open_segment(&mut self, path: &str, size: u64) -> Result<MemSegment, StoreError> {
        let mut seg = MemSegment::new(size);
        let seed = self.segments.entry(path.to_string()).or_default();
        let keep = seed.len().min(usize::try_from(size).unwrap_or(usize::MAX));
        seg.write_at(0, &seed[..keep])?;
        Ok(seg)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names = self.small.list(dir)?;
        names.extend(
            self.segments
                .keys()
                .filter_map(|p| p.strip_prefix(&prefix))
                .filter_map(|rest| rest.split('/').next())
                .map(str::to_string),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.segments.remove(path);
        self.small.remove(path)
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.small.read_file(path)
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.small.write_file(path, bytes)
    }
}

/// Segment and file paths the recovery target can seed.
const STORE_PATHS: [&str; 7] = [
    "commitlog/00000000000000000000",
    "commitlog/00000000000000001024",
    "consumequeue/T/0/00000000000000000000",
    "consumequeue/T/1/00000000000000000000",
    "consumequeue/T/0/00000000000000000160",
    "consumequeue/%RETRY%g/0/00000000000000000000",
    "checkpoint",
];

/// Small segments so the fuzzer reaches segment boundaries.
fn fuzz_store_config() -> StoreConfig {
    StoreConfig { commit_log_segment_bytes: 1024, consume_queue_segment_entries: 8, ..StoreConfig::default() }
}

/// Splits `data` into (path index, bytes) chunks: a byte picking the path, a byte of length
/// (times 8), then the bytes.
fn chunks(data: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while let [which, len, tail @ ..] = rest {
        let len = (usize::from(*len) * 8).min(tail.len());
        out.push((usize::from(*which), &tail[..len]));
        rest = &tail[len..];
    }
    out
}

/// Store recovery: seed CommitLog, ConsumeQueue and checkpoint files with the input, open the
/// store; if it opens, its invariants hold and every queue reads without panicking.
pub fn store_recovery(data: &[u8]) {
    let mut dir = SeededDir::default();
    for (which, bytes) in chunks(data) {
        let path = STORE_PATHS[which % STORE_PATHS.len()];
        if path == "checkpoint" {
            dir.small.write_file(path, bytes).expect("memory writes succeed");
        } else {
            dir.segments.entry(path.to_string()).or_default().extend_from_slice(bytes);
        }
    }
    let Ok((store, _report)) = MessageStore::open(dir, fuzz_store_config()) else { return };
    store.assert_invariants();
    for (topic, queue_id) in store.queues() {
        let min = store.min_queue_offset(&topic, queue_id);
        let max = store.max_queue_offset(&topic, queue_id);
        for queue_offset in [0, min, max.saturating_sub(1), max, max + 1] {
            let got = store.get_messages(&topic, queue_id, queue_offset, 32, 1 << 20, &|_| true);
            for record in &got.messages {
                let _ = decode_message(record, true);
            }
        }
        let _ = store.queue_offset_by_time(&topic, queue_id, 0);
        let _ = store.queue_offset_by_time(&topic, queue_id, i64::MAX);
    }
    for commit_log_offset in [0, store.commit_log_min_offset(), store.commit_log_max_offset()] {
        let _ = store.read_message(commit_log_offset);
    }
}

/// Reads the fuzz input a byte or a slice at a time; exhausted input reads as zeros.
struct Bytes8<'a>(&'a [u8]);

impl Bytes8<'_> {
    fn byte(&mut self) -> u8 {
        match self.0 {
            [b, rest @ ..] => {
                self.0 = rest;
                *b
            }
            [] => 0,
        }
    }

    fn pick<'v>(&mut self, vocabulary: &[&'v str]) -> &'v str {
        vocabulary[usize::from(self.byte()) % vocabulary.len()]
    }

    fn slice(&mut self) -> &[u8] {
        let len = usize::from(self.byte()).min(self.0.len());
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Request codes the broker serves (and a few it does not).
const BROKER_CODES: [i32; 24] =
    [10, 11, 13, 14, 15, 17, 21, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 41, 42, 43, 215, 310, 320];

/// Every ext-field key of the typed headers.
const EXT_KEYS: [&str; 48] = [
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "topic",
    "queueId",
    "queueOffset",
    "consumerGroup",
    "group",
    "producerGroup",
    "commitOffset",
    "maxMsgNums",
    "sysFlag",
    "subscription",
    "subVersion",
    "expressionType",
    "suspendTimeoutMillis",
    "defaultTopic",
    "defaultTopicQueueNums",
    "flag",
    "bornTimestamp",
    "properties",
    "reconsumeTimes",
    "maxReconsumeTimes",
    "batch",
    "offset",
    "delayLevel",
    "originMsgId",
    "originTopic",
    "readQueueNums",
    "writeQueueNums",
    "perm",
    "clientID",
    "timestamp",
    "msgId",
    "commitLogOffset",
    "unitMode",
    "order",
    "topicSysFlag",
];

/// Values that get past validation often, and some that should not.
const EXT_VALUES: [&str; 24] = [
    "T",
    "U",
    "%RETRY%g",
    "%DLQ%g",
    "g",
    "TBW102",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "7",
    "8",
    "100",
    "1024",
    "9223372036854775807",
    "-9223372036854775808",
    "true",
    "false",
    "*",
    "a || b",
    "",
    "../x",
    "SCHEDULE_TOPIC_XXXX",
];

/// A well-formed heartbeat body for one producer and one consumer group.
const HEARTBEAT: &str = r#"{"clientID":"c1","producerDataSet":[{"groupName":"p"}],"consumerDataSet":[{"groupName":"g","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"T","subString":"*","tagsSet":[],"codeSet":[],"subVersion":1}],"unitMode":false}]}"#;

/// Builds one request from the input: a code, up to 8 ext fields from the vocabularies (or raw
/// input), and a body that is empty, a heartbeat, a batch, or raw input.
fn request(input: &mut Bytes8, opaque: i32) -> RemotingCommand {
    let code = BROKER_CODES[usize::from(input.byte()) % BROKER_CODES.len()];
    let mut cmd = RemotingCommand::request(code, opaque);
    for _ in 0..input.byte() % 9 {
        let key = input.pick(&EXT_KEYS);
        let value = if input.byte() < 230 {
            input.pick(&EXT_VALUES).to_string()
        } else {
            String::from_utf8_lossy(input.slice()).into_owned()
        };
        cmd = cmd.with_ext(key, value);
    }
    match input.byte() % 4 {
        0 => cmd,
        1 => cmd.with_body(HEARTBEAT.as_bytes().to_vec()),
        2 => {
            let item = BatchItem { body: Bytes::copy_from_slice(input.slice()), flag: 0, properties: BTreeMap::new() };
            cmd.with_body(encode_batch(&[item]))
        }
        _ => cmd.with_body(input.slice().to_vec()),
    }
}

/// The broker core over an in-memory store: a sequence of connection events, requests (built
/// from the vocabularies, or decoded from raw frames), timers and flush/checkpoint completions.
/// Invariants hold after every step.
pub fn broker_core(data: &[u8]) {
    let config = BrokerConfig { store: fuzz_store_config(), ..BrokerConfig::default() };
    let mut now_ms = 1_000;
    let mut core = BrokerCore::open(MemDirectory::default(), config, now_ms).expect("a fresh store opens");
    let mut input = Bytes8(data);
    let mut opaque = 0;
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    while !input.is_empty() {
        let conn = ConnId(u64::from(input.byte() % 4));
        match input.byte() % 8 {
            0 => core.on_conn_opened(now_ms, conn, peer),
            1 => core.on_conn_closed(now_ms, conn),
            2 => {
                now_ms += u64::from(input.byte()) * 100;
                core.on_timer(now_ms);
            }
            3 => {
                let raw = input.slice().to_vec();
                if let Ok(Some(cmd)) = FrameDecoder::default().decode(&mut BytesMut::from(&raw[..])) {
                    core.on_request(now_ms, conn, cmd);
                }
            }
            _ => {
                opaque += 1;
                let cmd = request(&mut input, opaque);
                core.on_request(now_ms, conn, cmd);
            }
        }
        drive_outputs(&mut core, now_ms);
        core.assert_invariants();
    }
}

/// Carries out the core's outputs the way the driver does: flushes and checkpoints complete at
/// once, transmits are dropped.
fn drive_outputs(core: &mut BrokerCore<MemDirectory>, now_ms: u64) {
    while let Some(output) = core.poll_output() {
        match output {
            Output::Flush => match core.flush_store() {
                Ok(offset) => core.on_flushed(now_ms, offset),
                Err(_) => core.on_flush_failed(now_ms),
            },
            Output::Checkpoint => {
                if let Ok(mut pending) = core.begin_checkpoint() {
                    let ok = std::mem::take(&mut pending.jobs).into_iter().all(|job| job.run().is_ok());
                    core.on_checkpointed(now_ms, &pending, ok);
                }
            }
            // No slave is ever attached here (no HA connection opens), so HA outputs carry
            // nothing to act on.
            Output::Transmit { .. }
            | Output::RegisterBroker(_)
            | Output::HaTransmit { .. }
            | Output::HaClose { .. }
            | Output::HaConnect { .. }
            | Output::HaReport { .. }
            | Output::HaDisconnect { .. }
            | Output::MasterRequest { .. } => {}
        }
    }
}
