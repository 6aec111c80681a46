//! [`RemotingCommand`]: one request or response on a remoting connection.

use bytes::Bytes;

use crate::codes::{self, RequestCode, ResponseCode, FLAG_ONEWAY, FLAG_RESPONSE};
use crate::ext::ExtFields;
use crate::header::{CommandHeader, HeaderError};

/// How the header of a frame is serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SerializeType {
    /// The JSON header (type byte 0), RocketMQ's default.
    #[default]
    Json,
    /// The compact ROCKETMQ binary header (type byte 1).
    RocketMq,
}

impl SerializeType {
    /// The type byte carried in the high byte of the header-length word.
    pub fn byte(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }
}

/// One remoting command: a request (flag bit 0 clear) or a response (bit 0 set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemotingCommand {
    /// Request code for requests, response code for responses.
    pub code: i32,
    /// Sender's language code number.
    pub language: u8,
    /// Sender's protocol version (MQVersion ordinal).
    pub version: i32,
    /// Request id; a response echoes its request's opaque.
    pub opaque: i32,
    /// Flag bits: [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Free text, e.g. an error explanation.
    pub remark: Option<String>,
    /// The custom header: every field as a string.
    pub ext_fields: ExtFields,
    /// Raw body bytes.
    pub body: Bytes,
    /// How the header was (or will be) serialized on the wire.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A new request with the given code and opaque.
    pub fn request(code: impl Into<i32>, opaque: i32) -> Self {
        RemotingCommand {
            code: code.into(),
            language: 12,
            version: codes::VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A request carrying a typed header.
    pub fn request_with(code: RequestCode, opaque: i32, header: &impl CommandHeader) -> Self {
        let mut cmd = Self::request(code, opaque);
        cmd.ext_fields = header.to_ext();
        cmd
    }

    /// A response to `req`: echoes its opaque and serialize type.
    pub fn response_to(req: &RemotingCommand, code: ResponseCode) -> Self {
        RemotingCommand {
            code: code.code(),
            language: 12,
            version: codes::VERSION,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: req.serialize_type,
        }
    }

    /// Marks this request one-way.
    pub fn oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    /// Adds one ext field.
    pub fn with_ext(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(crate::ext::intern(key), value.to_string());
        self
    }

    /// Merges a typed header into the ext fields.
    pub fn with_header(mut self, header: &impl CommandHeader) -> Self {
        if self.ext_fields.is_empty() {
            // The usual case (a response's header): take the header's map as it is.
            self.ext_fields = header.to_ext();
        } else {
            self.ext_fields.extend(header.to_ext());
        }
        self
    }

    /// Sets the remark.
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// True for responses (flag bit 0).
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// True for one-way requests (flag bit 1).
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The request code as an enum.
    pub fn request_code(&self) -> RequestCode {
        RequestCode::from_code(self.code)
    }

    /// The response code as an enum.
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::from_code(self.code)
    }

    /// One ext field.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// Decodes the ext fields into a typed header.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::from_ext(&self.ext_fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::QueueRequestHeader;

    #[test]
    fn a_header_fills_an_empty_map_and_merges_into_a_filled_one() {
        let h = QueueRequestHeader { topic: "T".into(), queue_id: 3 };
        let fresh = RemotingCommand::request(RequestCode::GetMaxOffset, 1).with_header(&h);
        assert_eq!(fresh.ext_fields, h.to_ext());
        let merged = RemotingCommand::request(RequestCode::GetMaxOffset, 1)
            .with_ext("zz", "kept")
            .with_ext("topic", "replaced")
            .with_header(&h);
        let got: Vec<(&str, &String)> = merged.ext_fields.iter().collect();
        assert_eq!(got, vec![("queueId", &"3".to_string()), ("topic", &"T".to_string()), ("zz", &"kept".to_string())]);
    }
}
