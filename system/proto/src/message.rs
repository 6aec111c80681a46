//! The stored-message layout (CommitLog records and pull bodies), properties, batch bodies and
//! message ids.
//!
//! Layout of one record, big-endian: TOTALSIZE i32, MAGICCODE i32, BODYCRC i32, QUEUEID i32,
//! FLAG i32, QUEUEOFFSET i64, PHYSICALOFFSET i64, SYSFLAG i32, BORNTIMESTAMP i64, BORNHOST
//! (4+4 or 16+4), STORETIMESTAMP i64, STOREHOST, RECONSUMETIMES i32, PREPARED TX OFFSET i64,
//! BODY (i32 len + bytes), TOPIC (u8 len V1 / i16 len V2 + bytes), PROPERTIES (i16 len + bytes).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes};

use crate::codes::sys_flag;

/// Magic of a V1 record (topic length in one byte).
pub const MAGIC_V1: i32 = 0xDAA320A7_u32 as i32;
/// Magic of a V2 record (topic length in two bytes).
pub const MAGIC_V2: i32 = 0xDAA320AB_u32 as i32;
/// Magic of the blank record padding the end of a CommitLog file.
pub const MAGIC_BLANK: i32 = 0xCBD43194_u32 as i32;
/// Largest body accepted (4 MiB).
pub const BODY_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest properties string accepted (< i16::MAX).
pub const PROPERTIES_MAX_BYTES: usize = i16::MAX as usize - 1;
/// Largest topic name accepted.
pub const TOPIC_MAX_BYTES: usize = 127;

/// Property separators.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Separator between properties.
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Well-known property keys.
pub mod prop {
    /// Tag.
    pub const TAGS: &str = "TAGS";
    /// Space-separated keys.
    pub const KEYS: &str = "KEYS";
    /// Wait for store OK (default true).
    pub const WAIT: &str = "WAIT";
    /// Delay level.
    pub const DELAY: &str = "DELAY";
    /// Client-generated unique id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Original topic of a retried/delayed/half message.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Original queue id.
    pub const REAL_QID: &str = "REAL_QID";
    /// Retry topic marker.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Original message id of a retried message.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Half message marker.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group.
    pub const PGROUP: &str = "PGROUP";
    /// Max reconsume times.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Region.
    pub const MSG_REGION: &str = "MSG_REGION";
    /// Trace switch.
    pub const TRACE_ON: &str = "TRACE_ON";
    /// Inner batch marker.
    pub const INNER_NUM: &str = "INNER_NUM";
}

/// Why a stored message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer bytes than the record claims.
    #[error("record truncated: need {need_bytes} bytes, have {have_bytes}")]
    Truncated {
        /// Bytes the record needs.
        need_bytes: usize,
        /// Bytes available.
        have_bytes: usize,
    },
    /// Unknown magic code.
    #[error("bad magic code {0:#x}")]
    BadMagic(i32),
    /// TOTALSIZE disagrees with the fields.
    #[error("record size {declared} disagrees with its fields ({computed})")]
    SizeMismatch {
        /// TOTALSIZE field.
        declared: usize,
        /// Size computed from the fields.
        computed: usize,
    },
    /// Body CRC mismatch.
    #[error("body CRC mismatch: stored {stored:#x}, computed {computed:#x}")]
    BadCrc {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// Topic or properties not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A field is out of range (negative length, too long).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// RocketMQ's body CRC: CRC32 masked to 31 bits.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// A stored message with all broker-assigned fields (Java `MessageExt`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageExt {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// Logical offset in the ConsumeQueue.
    pub queue_offset: i64,
    /// Byte offset of this record in the CommitLog.
    pub commit_log_offset: i64,
    /// sysFlag bits.
    pub sys_flag: i32,
    /// Producer timestamp, ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Broker timestamp, ms.
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Times reconsumed.
    pub reconsume_times: i32,
    /// Prepared transaction offset.
    pub prepared_transaction_offset: i64,
    /// Body.
    pub body: Bytes,
    /// Properties.
    pub properties: BTreeMap<String, String>,
}

impl Default for MessageExt {
    fn default() -> Self {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        MessageExt {
            topic: String::new(),
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: unspecified,
            store_timestamp: 0,
            store_host: unspecified,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::new(),
            properties: BTreeMap::new(),
        }
    }
}

impl MessageExt {
    /// A message's user-visible id: UNIQ_KEY if present, else the offset message id.
    pub fn msg_id(&self) -> String {
        self.properties
            .get(prop::UNIQ_KEY)
            .cloned()
            .unwrap_or_else(|| offset_msg_id(self.store_host, self.commit_log_offset))
    }

    /// The TAGS property.
    pub fn tags(&self) -> Option<&str> {
        self.properties.get(prop::TAGS).map(String::as_str)
    }

    /// The encoded size of this record.
    pub fn encoded_len(&self) -> usize {
        let props = encode_properties(&self.properties);
        record_len(self.topic.len(), self.body.len(), props.len(), self.sys_flag)
    }
}

fn host_len(v6: bool) -> usize {
    if v6 {
        20
    } else {
        8
    }
}

/// Size of a record with these field lengths.
pub fn record_len(topic_len: usize, body_len: usize, props_len: usize, sys_flag: i32) -> usize {
    let topic_len_bytes = if topic_len > TOPIC_MAX_BYTES { 2 } else { 1 };
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(sys_flag & sys_flag::BORNHOST_V6 != 0)
        + 8
        + host_len(sys_flag & sys_flag::STOREHOST_V6 != 0)
        + 4
        + 8
        + 4
        + body_len
        + topic_len_bytes
        + topic_len
        + 2
        + props_len
}

/// Encodes properties as `k\x01v\x02...` in key order.
pub fn encode_properties(props: &BTreeMap<String, String>) -> String {
    encode_properties_with(props, None)
}

/// [`encode_properties`] of `props` plus `default` = (key, value) in its key-order place, unless
/// `props` has that key (its own value wins): a default added without copying the map.
pub fn encode_properties_with(props: &BTreeMap<String, String>, default: Option<(&str, &str)>) -> String {
    let mut default = default.filter(|(k, _)| !props.contains_key(*k));
    let extra = default.map_or(0, |(k, v)| k.len() + v.len() + 2);
    let mut s = String::with_capacity(encoded_properties_len(props) + extra);
    let push = |s: &mut String, k: &str, v: &str| {
        s.push_str(k);
        s.push(NAME_VALUE_SEPARATOR);
        s.push_str(v);
        s.push(PROPERTY_SEPARATOR);
    };
    for (k, v) in props {
        if let Some((dk, dv)) = default.filter(|(dk, _)| *dk < k.as_str()) {
            push(&mut s, dk, dv);
            default = None;
        }
        push(&mut s, k, v);
    }
    if let Some((dk, dv)) = default {
        push(&mut s, dk, dv);
    }
    s
}

/// The length in bytes of `encode_properties(props)`, without building it.
pub fn encoded_properties_len(props: &BTreeMap<String, String>) -> usize {
    props.iter().map(|(k, v)| k.len() + v.len() + NAME_VALUE_SEPARATOR.len_utf8() + PROPERTY_SEPARATOR.len_utf8()).sum()
}

/// Decodes a properties string; segments without a separator are skipped.
pub fn decode_properties(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in s.split(PROPERTY_SEPARATOR) {
        if let Some((k, v)) = item.split_once(NAME_VALUE_SEPARATOR) {
            if !k.is_empty() {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

fn put_host(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(i32::from(addr.port()));
}

/// Encodes a record; the sysFlag's host bits are set from the address families.
pub fn encode_message(msg: &MessageExt, out: &mut Vec<u8>) -> Result<(), MessageError> {
    if msg.body.len() > BODY_MAX_BYTES {
        return Err(MessageError::Invalid("body larger than 4 MiB"));
    }
    if msg.topic.len() > i16::MAX as usize {
        return Err(MessageError::Invalid("topic too long"));
    }
    let props = encode_properties(&msg.properties);
    if props.len() > PROPERTIES_MAX_BYTES {
        return Err(MessageError::Invalid("properties longer than 32766 bytes"));
    }
    let mut flags = msg.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
    if msg.born_host.is_ipv6() {
        flags |= sys_flag::BORNHOST_V6;
    }
    if msg.store_host.is_ipv6() {
        flags |= sys_flag::STOREHOST_V6;
    }
    let v2 = msg.topic.len() > TOPIC_MAX_BYTES;
    let total = record_len(msg.topic.len(), msg.body.len(), props.len(), flags);
    out.reserve(total);
    out.put_i32(total as i32);
    out.put_i32(if v2 { MAGIC_V2 } else { MAGIC_V1 });
    out.put_u32(body_crc(&msg.body));
    out.put_i32(msg.queue_id);
    out.put_i32(msg.flag);
    out.put_i64(msg.queue_offset);
    out.put_i64(msg.commit_log_offset);
    out.put_i32(flags);
    out.put_i64(msg.born_timestamp);
    put_host(out, msg.born_host);
    out.put_i64(msg.store_timestamp);
    put_host(out, msg.store_host);
    out.put_i32(msg.reconsume_times);
    out.put_i64(msg.prepared_transaction_offset);
    out.put_i32(msg.body.len() as i32);
    out.put_slice(&msg.body);
    if v2 {
        out.put_i16(msg.topic.len() as i16);
    } else {
        out.put_u8(msg.topic.len() as u8);
    }
    out.put_slice(msg.topic.as_bytes());
    out.put_i16(props.len() as i16);
    out.put_slice(props.as_bytes());
    Ok(())
}

fn need(buf: &Bytes, n: usize) -> Result<(), MessageError> {
    if buf.remaining() < n {
        Err(MessageError::Truncated { need_bytes: n, have_bytes: buf.remaining() })
    } else {
        Ok(())
    }
}

fn take_host(buf: &mut Bytes, v6: bool) -> Result<SocketAddr, MessageError> {
    need(buf, host_len(v6))?;
    let ip: IpAddr = if v6 {
        let mut o = [0u8; 16];
        buf.copy_to_slice(&mut o);
        IpAddr::from(o)
    } else {
        let mut o = [0u8; 4];
        buf.copy_to_slice(&mut o);
        IpAddr::V4(Ipv4Addr::from(o))
    };
    let port = buf.get_i32();
    Ok(SocketAddr::new(ip, u16::try_from(port).unwrap_or(0)))
}

fn take_len(buf: &mut Bytes, n: usize, what: &'static str) -> Result<usize, MessageError> {
    let len = match n {
        1 => usize::from(buf.get_u8()),
        2 => usize::try_from(buf.get_i16()).map_err(|_| MessageError::Invalid(what))?,
        _ => usize::try_from(buf.get_i32()).map_err(|_| MessageError::Invalid(what))?,
    };
    need(buf, len)?;
    Ok(len)
}

/// Decodes one record from the front of `buf`, checking magic, size and (if asked) body CRC.
/// Returns the message and the record length.
pub fn decode_message(buf: &Bytes, check_crc: bool) -> Result<(MessageExt, usize), MessageError> {
    let mut b = buf.clone();
    need(&b, 8)?;
    let total = b.get_i32();
    let magic = b.get_i32();
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(MessageError::BadMagic(magic));
    }
    let total = usize::try_from(total).map_err(|_| MessageError::Invalid("negative total size"))?;
    if total < 8 || total > buf.len() {
        return Err(MessageError::Truncated { need_bytes: total, have_bytes: buf.len() });
    }
    b.truncate(total - 8);
    need(&b, 4 + 4 + 4 + 8 + 8 + 4 + 8)?;
    let crc = b.get_u32();
    let queue_id = b.get_i32();
    let flag = b.get_i32();
    let queue_offset = b.get_i64();
    let commit_log_offset = b.get_i64();
    let sys = b.get_i32();
    let born_timestamp = b.get_i64();
    let born_host = take_host(&mut b, sys & sys_flag::BORNHOST_V6 != 0)?;
    need(&b, 8)?;
    let store_timestamp = b.get_i64();
    let store_host = take_host(&mut b, sys & sys_flag::STOREHOST_V6 != 0)?;
    need(&b, 4 + 8 + 4)?;
    let reconsume_times = b.get_i32();
    let prepared_transaction_offset = b.get_i64();
    let body_len = take_len(&mut b, 4, "negative body length")?;
    let body = b.split_to(body_len);
    need(&b, if magic == MAGIC_V2 { 2 } else { 1 })?;
    let topic_len = take_len(&mut b, if magic == MAGIC_V2 { 2 } else { 1 }, "negative topic length")?;
    let topic = String::from_utf8(b.split_to(topic_len).to_vec()).map_err(|_| MessageError::NotUtf8("topic"))?;
    need(&b, 2)?;
    let props_len = take_len(&mut b, 2, "negative properties length")?;
    let props =
        std::str::from_utf8(&b.split_to(props_len)).map_err(|_| MessageError::NotUtf8("properties"))?.to_string();
    let computed = record_len(topic.len(), body.len(), props.len(), sys);
    if computed != total {
        return Err(MessageError::SizeMismatch { declared: total, computed });
    }
    if check_crc {
        let actual = body_crc(&body);
        if actual != crc {
            return Err(MessageError::BadCrc { stored: crc, computed: actual });
        }
        // The body CRC covers neither topic nor properties: a write torn after the body leaves
        // them zero-filled (fresh space) or garbage. Neither ever holds a NUL byte.
        if topic.contains('\0') || props.contains('\0') {
            return Err(MessageError::Invalid("NUL byte in topic or properties (torn write)"));
        }
    }
    let msg = MessageExt {
        topic,
        queue_id,
        flag,
        queue_offset,
        commit_log_offset,
        sys_flag: sys,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        properties: decode_properties(&props),
    };
    Ok((msg, total))
}

/// Decodes every record of a pull body.
pub fn decode_messages(body: &Bytes) -> Result<Vec<MessageExt>, MessageError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (m, n) = decode_message(&body.slice(pos..), true)?;
        out.push(m);
        pos += n;
    }
    Ok(out)
}

/// One message of a SEND_BATCH_MESSAGE body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchItem {
    /// User flag.
    pub flag: i32,
    /// Body.
    pub body: Bytes,
    /// Properties.
    pub properties: BTreeMap<String, String>,
}

/// Encodes a batch body: per message TOTALSIZE, MAGIC=0, CRC=0, FLAG, BODYLEN+body, PROPLEN+props.
pub fn encode_batch(items: &[BatchItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        let props = encode_properties(&it.properties);
        let total = 4 + 4 + 4 + 4 + 4 + it.body.len() + 2 + props.len();
        out.put_i32(total as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(it.flag);
        out.put_i32(it.body.len() as i32);
        out.put_slice(&it.body);
        out.put_i16(props.len() as i16);
        out.put_slice(props.as_bytes());
    }
    out
}

/// Decodes a batch body.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchItem>, MessageError> {
    let mut b = body.clone();
    let mut out = Vec::new();
    while b.has_remaining() {
        need(&b, 20)?;
        let total = usize::try_from(b.get_i32()).map_err(|_| MessageError::Invalid("negative batch size"))?;
        let _magic = b.get_i32();
        let _crc = b.get_i32();
        let flag = b.get_i32();
        let body_len = take_len(&mut b, 4, "negative body length")?;
        let item_body = b.split_to(body_len);
        need(&b, 2)?;
        let props_len = take_len(&mut b, 2, "negative properties length")?;
        let props =
            std::str::from_utf8(&b.split_to(props_len)).map_err(|_| MessageError::NotUtf8("properties"))?.to_string();
        if total != 22 + body_len + props_len {
            return Err(MessageError::SizeMismatch { declared: total, computed: 22 + body_len + props_len });
        }
        out.push(BatchItem { flag, body: item_body, properties: decode_properties(&props) });
    }
    Ok(out)
}

/// The broker's offset message id: hex(store ip, port as i32, commit-log offset).
pub fn offset_msg_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut raw = Vec::with_capacity(28);
    put_host(&mut raw, store_host);
    raw.put_i64(commit_log_offset);
    hex_upper(&raw)
}

/// Parses an offset message id back into (store host, commit-log offset).
pub fn parse_offset_msg_id(id: &str) -> Option<(SocketAddr, i64)> {
    let raw = hex_decode(id)?;
    let mut b = Bytes::from(raw);
    let v6 = match b.len() {
        16 => false,
        28 => true,
        _ => return None,
    };
    let host = take_host(&mut b, v6).ok()?;
    Some((host, b.get_i64()))
}

/// Builds a client unique id (UNIQ_KEY): ip(4), pid(i16), client hash(i32), ms-in-epoch(i32), counter(i16).
pub fn uniq_msg_id(ip: Ipv4Addr, pid: u16, client_hash: i32, time_ms: i64, counter: u16) -> String {
    let mut raw = Vec::with_capacity(16);
    raw.put_slice(&ip.octets());
    raw.put_u16(pid);
    raw.put_i32(client_hash);
    raw.put_i32(time_ms as i32);
    raw.put_u16(counter);
    hex_upper(&raw)
}

fn hex_upper(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(raw.len() * 2);
    for b in raw {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        ]
    }

    prop_compose! {
        fn arb_message()(
            topic in "[A-Za-z0-9_%]{1,200}", queue_id in 0i32..1024, flag in any::<i32>(),
            queue_offset in 0i64..i64::MAX / 2, clo in 0i64..i64::MAX / 2, sys in 0i32..16,
            born in any::<i64>(), born_host in arb_addr(), store in any::<i64>(), store_host in arb_addr(),
            recon in 0i32..32, prep in any::<i64>(), body in proptest::collection::vec(any::<u8>(), 0..300),
            props in proptest::collection::btree_map("[A-Z_]{1,10}", "[a-zA-Z0-9 ]{0,20}", 0..6),
        ) -> MessageExt {
            let mut sys_flag = sys;
            if born_host.is_ipv6() { sys_flag |= sys_flag::BORNHOST_V6; }
            if store_host.is_ipv6() { sys_flag |= sys_flag::STOREHOST_V6; }
            MessageExt { topic, queue_id, flag, queue_offset, commit_log_offset: clo, sys_flag, born_timestamp: born,
                born_host, store_timestamp: store, store_host, reconsume_times: recon,
                prepared_transaction_offset: prep, body: Bytes::from(body), properties: props }
        }
    }

    proptest! {
        #[test]
        fn the_properties_length_is_that_of_their_encoding(m in arb_message()) {
            prop_assert_eq!(encoded_properties_len(&m.properties), encode_properties(&m.properties).len());
        }

        /// A write torn after the body leaves the properties (the record's tail) zero-filled:
        /// the body CRC still matches, so the CRC check alone would accept the record.
        #[test]
        fn a_record_whose_tail_was_torn_to_zeros_is_rejected(m in arb_message(), cut_back in 1usize..64) {
            prop_assume!(!m.properties.is_empty());
            let mut out = Vec::new();
            encode_message(&m, &mut out).unwrap();
            let props_len = encode_properties(&m.properties).len();
            let zeroed = cut_back.min(props_len);
            let n = out.len();
            out[n - zeroed..].fill(0);
            prop_assert!(decode_message(&Bytes::from(out.clone()), true).is_err());
        }

        #[test]
        fn every_message_round_trips(m in arb_message()) {
            let mut out = Vec::new();
            encode_message(&m, &mut out).unwrap();
            prop_assert_eq!(out.len(), m.encoded_len());
            let (back, n) = decode_message(&Bytes::from(out.clone()), true).unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn batches_round_trip(items in proptest::collection::vec(
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..100),
             proptest::collection::btree_map("[A-Z]{1,6}", "[a-z0-9]{0,8}", 0..4))
                .prop_map(|(flag, body, properties)| BatchItem { flag, body: Bytes::from(body), properties }), 0..6)) {
            let wire = Bytes::from(encode_batch(&items));
            prop_assert_eq!(decode_batch(&wire).unwrap(), items);
        }

        #[test]
        fn corrupt_records_never_panic(m in arb_message(), cut in 0usize..400, flip in 0usize..400) {
            let mut out = Vec::new();
            encode_message(&m, &mut out).unwrap();
            let len = out.len();
            out[flip % len] ^= 0x5a;
            out.truncate(cut.min(len));
            let _ = decode_message(&Bytes::from(out), true);
        }

        #[test]
        fn offset_ids_round_trip(addr in arb_addr(), off in 0i64..i64::MAX) {
            prop_assert_eq!(parse_offset_msg_id(&offset_msg_id(addr, off)), Some((addr, off)));
        }
    }

    #[test]
    fn crc_flip_is_detected() {
        let m = MessageExt { topic: "t".into(), body: Bytes::from_static(b"hello"), ..Default::default() };
        let mut out = Vec::new();
        encode_message(&m, &mut out).unwrap();
        let body_at = out.len() - 2 - 1 - 1 - 5;
        out[body_at] ^= 1;
        assert!(matches!(decode_message(&Bytes::from(out), true), Err(MessageError::BadCrc { .. })));
    }

    #[test]
    fn properties_skip_garbage_segments() {
        let p = decode_properties("TAGS\u{1}a\u{2}junk\u{2}\u{1}x\u{2}KEYS\u{1}k1 k2\u{2}");
        assert_eq!(p.len(), 2);
        assert_eq!(p["KEYS"], "k1 k2");
    }

    proptest! {
        /// A default lands where inserting it into the map would put it, and never replaces
        /// the map's own value.
        #[test]
        fn a_default_property_encodes_as_if_inserted(
            props in proptest::collection::btree_map("[A-Z]{1,4}", "[a-z]{0,3}", 0..6),
            key in "[A-Z]{1,4}",
        ) {
            let mut inserted = props.clone();
            inserted.entry(key.clone()).or_insert_with(|| "dflt".into());
            prop_assert_eq!(encode_properties_with(&props, Some((&key, "dflt"))), encode_properties(&inserted));
            prop_assert_eq!(encode_properties_with(&props, None), encode_properties(&props));
        }
    }
}
