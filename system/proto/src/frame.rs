//! Framing: `[len u32][type u8 | header_len u24][header][body]`, all big-endian.
//!
//! [`FrameDecoder`] is incremental: feed it a buffer, it returns `Ok(None)` until a whole frame
//! is present. Any malformed input is an [`FrameError`]; the caller closes that one connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::codes::{language_code, language_name};
use crate::command::{RemotingCommand, SerializeType};
use crate::ext::{intern, ExtFields};

/// Default largest frame accepted: 16 MiB (RocketMQ's `frameMaxLength`).
pub const FRAME_MAX_BYTES_DEFAULT: usize = 16 * 1024 * 1024;
/// Largest header accepted (the header length field is 24 bits).
pub const HEADER_MAX_BYTES: usize = 0xFF_FFFF;

/// Why a frame could not be decoded. Each variant closes the offending connection only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len_bytes} bytes exceeds the maximum of {max_bytes}")]
    TooLarge {
        /// Announced length.
        len_bytes: usize,
        /// Configured maximum.
        max_bytes: usize,
    },
    /// The length prefix is smaller than the header-length word itself.
    #[error("frame length {len_bytes} is too short")]
    TooShort {
        /// Announced length.
        len_bytes: usize,
    },
    /// The header length runs past the frame.
    #[error("header length {header_len} exceeds frame length {frame_len}")]
    HeaderOverrun {
        /// Announced header length.
        header_len: usize,
        /// Frame length.
        frame_len: usize,
    },
    /// Unknown serialize type byte.
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    /// The JSON header does not parse.
    #[error("malformed JSON header: {0}")]
    BadJsonHeader(String),
    /// The binary header is truncated or not UTF-8.
    #[error("malformed binary header: {0}")]
    BadBinaryHeader(&'static str),
    /// The command cannot be encoded (field too long for the wire).
    #[error("cannot encode: {0}")]
    Unencodable(&'static str),
}

/// Incremental frame decoder with a size limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameDecoder {
    /// Largest accepted frame, counting everything after the length prefix.
    pub max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { max_frame_bytes: FRAME_MAX_BYTES_DEFAULT }
    }
}

impl FrameDecoder {
    /// Takes one whole frame off the front of `buf`, if present.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge { len_bytes: len, max_bytes: self.max_frame_bytes });
        }
        if len < 4 {
            return Err(FrameError::TooShort { len_bytes: len });
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let frame = buf.split_to(len).freeze();
        decode_frame_body(frame).map(Some)
    }
}

/// Decodes a frame without its length prefix.
pub fn decode_frame_body(mut frame: Bytes) -> Result<RemotingCommand, FrameError> {
    let frame_len = frame.len();
    // A public entry point: a frame too short for its header word is peer input, not a bug
    // (`get_u32` would panic on it).
    if frame_len < 4 {
        return Err(FrameError::TooShort { len_bytes: frame_len });
    }
    let word = frame.get_u32();
    let kind = (word >> 24) as u8;
    let header_len = (word & 0xFF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(FrameError::HeaderOverrun { header_len, frame_len });
    }
    let header = frame.split_to(header_len);
    let mut cmd = match kind {
        0 => decode_json_header(&header)?,
        1 => decode_binary_header(&header)?,
        other => return Err(FrameError::UnknownSerializeType(other)),
    };
    cmd.body = frame;
    Ok(cmd)
}

/// Appends the encoded frame of `cmd` (in its own serialize type) to `out`.
pub fn encode_frame(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<(), FrameError> {
    encode_frame_head(cmd, out)?;
    out.put_slice(&cmd.body);
    Ok(())
}

/// Appends the encoded frame of `cmd` without its body (the length words count the body):
/// a writer that can send the body from where it already is appends nothing more.
pub fn encode_frame_head(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<(), FrameError> {
    let at = out.len();
    // The two length words are written once the header's length is known; the binary header is
    // encoded straight into `out` behind them (no buffer of its own).
    out.put_u64(0);
    let header = match cmd.serialize_type {
        SerializeType::Json => {
            out.put_slice(&encode_json_header(cmd));
            Ok(())
        }
        SerializeType::RocketMq => encode_binary_header(cmd, out),
    };
    let header_len = out.len() - at - 8;
    let checked = header.and_then(|()| {
        if header_len > HEADER_MAX_BYTES {
            return Err(FrameError::Unencodable("header longer than 16 MiB"));
        }
        let total = 4 + header_len + cmd.body.len();
        u32::try_from(total).map_err(|_| FrameError::Unencodable("frame over 4 GiB"))
    });
    let total32 = match checked {
        Ok(t) => t,
        Err(e) => {
            out.truncate(at);
            return Err(e);
        }
    };
    out[at..at + 4].copy_from_slice(&total32.to_be_bytes());
    let word = (u32::from(cmd.serialize_type.byte()) << 24) | header_len as u32;
    out[at + 4..at + 8].copy_from_slice(&word.to_be_bytes());
    Ok(())
}

/// Encodes a whole frame into a fresh buffer.
pub fn encode_to_bytes(cmd: &RemotingCommand) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::new();
    encode_frame(cmd, &mut out)?;
    Ok(out.freeze())
}

#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    language: &'a str,
    version: i32,
    opaque: i32,
    flag: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "extFields", skip_serializing_if = "ExtFields::is_empty")]
    ext_fields: &'a ExtFields,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'a str,
}

#[derive(Deserialize)]
struct JsonHeaderIn {
    code: i32,
    #[serde(default)]
    language: Option<serde_json::Value>,
    #[serde(default)]
    version: i32,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    flag: i32,
    #[serde(default)]
    remark: Option<String>,
    #[serde(rename = "extFields", default)]
    ext_fields: Option<ExtFields>,
}

fn encode_json_header(cmd: &RemotingCommand) -> Vec<u8> {
    let h = JsonHeaderOut {
        code: cmd.code,
        language: language_name(cmd.language),
        version: cmd.version,
        opaque: cmd.opaque,
        flag: cmd.flag,
        remark: cmd.remark.as_deref(),
        ext_fields: &cmd.ext_fields,
        serialize_type: "JSON",
    };
    serde_json::to_vec(&h).expect("a struct of strings and integers always serializes")
}

fn decode_json_header(bytes: &[u8]) -> Result<RemotingCommand, FrameError> {
    let h: JsonHeaderIn = serde_json::from_slice(bytes).map_err(|e| FrameError::BadJsonHeader(e.to_string()))?;
    let language = match h.language {
        Some(serde_json::Value::String(s)) => language_code(&s),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|v| u8::try_from(v).ok()).unwrap_or(7),
        _ => 7,
    };
    Ok(RemotingCommand {
        code: h.code,
        language,
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark,
        ext_fields: h.ext_fields.unwrap_or_default(),
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

fn encode_binary_header(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<(), FrameError> {
    let code = i16::try_from(cmd.code).map_err(|_| FrameError::Unencodable("code beyond i16"))?;
    let version = i16::try_from(cmd.version).unwrap_or(i16::MAX);
    let remark = cmd.remark.as_deref().unwrap_or_default();
    let ext_len: usize = cmd.ext_fields.iter().map(|(k, v)| 2 + k.len() + 4 + v.len()).sum();
    out.reserve(17 + remark.len() + ext_len);
    out.put_i16(code);
    out.put_u8(cmd.language);
    out.put_i16(version);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    out.put_i32(remark.len() as i32);
    out.put_slice(remark.as_bytes());
    out.put_i32(ext_len as i32);
    for (k, v) in &cmd.ext_fields {
        let klen = u16::try_from(k.len()).map_err(|_| FrameError::Unencodable("ext key too long"))?;
        out.put_u16(klen);
        out.put_slice(k.as_bytes());
        out.put_i32(v.len() as i32);
        out.put_slice(v.as_bytes());
    }
    Ok(())
}

/// Takes `len` bytes of UTF-8 off the front of `buf`.
fn take_str<'a>(buf: &mut &'a [u8], len: usize, what: &'static str) -> Result<&'a str, FrameError> {
    let (raw, rest) = buf.split_at_checked(len).ok_or(FrameError::BadBinaryHeader(what))?;
    let s = std::str::from_utf8(raw).map_err(|_| FrameError::BadBinaryHeader("string not UTF-8"))?;
    *buf = rest;
    Ok(s)
}

fn take_len(buf: &mut &[u8], what: &'static str) -> Result<usize, FrameError> {
    if buf.remaining() < 4 {
        return Err(FrameError::BadBinaryHeader(what));
    }
    let n = buf.get_i32();
    usize::try_from(n).map_err(|_| FrameError::BadBinaryHeader("negative length"))
}

fn decode_binary_header(mut buf: &[u8]) -> Result<RemotingCommand, FrameError> {
    if buf.remaining() < 13 {
        return Err(FrameError::BadBinaryHeader("fixed part truncated"));
    }
    let code = i32::from(buf.get_i16());
    let language = buf.get_u8();
    let version = i32::from(buf.get_i16());
    let opaque = buf.get_i32();
    let flag = buf.get_i32();
    let remark_len = take_len(&mut buf, "remark length truncated")?;
    let remark =
        if remark_len > 0 { Some(take_str(&mut buf, remark_len, "remark truncated")?.to_owned()) } else { None };
    let ext_len = take_len(&mut buf, "ext length truncated")?;
    let Some((mut ext, _)) = buf.split_at_checked(ext_len) else {
        return Err(FrameError::BadBinaryHeader("ext fields truncated"));
    };
    let mut ext_fields = ExtFields::with_capacity((ext_len / 12).min(16));
    while ext.has_remaining() {
        if ext.remaining() < 2 {
            return Err(FrameError::BadBinaryHeader("ext key length truncated"));
        }
        let klen = usize::from(ext.get_u16());
        let k = take_str(&mut ext, klen, "ext key truncated")?;
        let vlen = take_len(&mut ext, "ext value length truncated")?;
        let v = take_str(&mut ext, vlen, "ext value truncated")?;
        ext_fields.insert(intern(k), v.to_owned());
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..14,
            any::<i16>(),
            any::<i32>(),
            0i32..4,
            proptest::option::of("[a-zA-Z0-9 _\\-:]{1,40}"),
            proptest::collection::btree_map("[a-zA-Z]{1,12}", "[ -~]{0,30}", 0..8),
            proptest::collection::vec(any::<u8>(), 0..256),
            any::<bool>(),
        )
            .prop_map(|(code, language, version, opaque, flag, remark, ext, body, bin)| RemotingCommand {
                code: i32::from(code),
                language,
                version: i32::from(version),
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect(),
                body: Bytes::from(body),
                serialize_type: if bin { SerializeType::RocketMq } else { SerializeType::Json },
            })
    }

    proptest! {
        #[test]
        fn every_command_round_trips(cmd in arb_command()) {
            let mut wire = BytesMut::new();
            encode_frame(&cmd, &mut wire).unwrap();
            let mut dec = FrameDecoder::default();
            let back = dec.decode(&mut wire).unwrap().unwrap();
            prop_assert_eq!(back, cmd);
            prop_assert!(wire.is_empty());
        }

        #[test]
        fn split_delivery_yields_the_same_frames(cmds in proptest::collection::vec(arb_command(), 1..5), cut in 1usize..64) {
            let mut wire = BytesMut::new();
            for c in &cmds { encode_frame(c, &mut wire).unwrap(); }
            let mut dec = FrameDecoder::default();
            let mut got = Vec::new();
            let mut buf = BytesMut::new();
            for chunk in wire.chunks(cut) {
                buf.extend_from_slice(chunk);
                while let Some(c) = dec.decode(&mut buf).unwrap() { got.push(c); }
            }
            prop_assert_eq!(got, cmds);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut dec = FrameDecoder { max_frame_bytes: 1024 };
            for _ in 0..8 {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let err = FrameDecoder::default().decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
    }

    #[test]
    fn header_overrun_and_bad_json_are_errors() {
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 9, b'{', b'}'][..]);
        assert!(matches!(FrameDecoder::default().decode(&mut buf), Err(FrameError::HeaderOverrun { .. })));
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x'][..]);
        assert!(matches!(FrameDecoder::default().decode(&mut buf), Err(FrameError::BadJsonHeader(_))));
        let mut buf = BytesMut::from(&[0, 0, 0, 4, 9, 0, 0, 0][..]);
        assert!(matches!(FrameDecoder::default().decode(&mut buf), Err(FrameError::UnknownSerializeType(9))));
    }

    #[test]
    fn decodes_java_style_json_header() {
        let json = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":401}"#;
        let mut buf = BytesMut::new();
        buf.put_u32(4 + json.len() as u32);
        buf.put_u32(json.len() as u32);
        buf.put_slice(json);
        let cmd = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.language, 0);
        assert_eq!(cmd.ext("topic"), Some("T"));
    }
}
