//! Message headers, and building the few messages the server writes itself (status, errors,
//! replies to blocked cells).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::RawMessage;

/// The messaging protocol version the server speaks.
pub const PROTOCOL_VERSION: &str = "5.3";

/// A Jupyter message header. Unknown fields are ignored; missing ones default; a field of an
/// unexpected type (some clients send `date` as epoch seconds) is read as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    #[serde(default, deserialize_with = "lenient_string")]
    pub msg_id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub msg_type: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub session: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub username: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub date: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub version: String,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_with_numeric_dates_are_read() {
        let header: Header = serde_json::from_str(
            r#"{"msg_id":"m","msg_type":"kernel_info_request","date":1764000000.5,"session":"s","version":5.4}"#,
        )
        .unwrap();
        assert_eq!(header.date, "1764000000.5");
        assert_eq!(header.msg_type, "kernel_info_request");
    }

    #[test]
    fn a_header_naming_its_type_twice_is_refused() {
        // The server routes and gates by msg_type; Python would read the last one.
        let header = serde_json::from_str::<Header>(
            r#"{"msg_id":"m","msg_type":"kernel_info_request","msg_type":"execute_request"}"#,
        );
        assert!(header.is_err(), "{header:?}");
    }
}

impl Header {
    /// A fresh header; `date` is an ISO 8601 timestamp the caller supplies.
    pub fn new(msg_type: &str, session: &str, username: &str, date: String) -> Header {
        Header {
            msg_id: uuid::Uuid::new_v4().simple().to_string(),
            msg_type: msg_type.to_owned(),
            session: session.to_owned(),
            username: username.to_owned(),
            date,
            version: PROTOCOL_VERSION.to_owned(),
        }
    }
}

/// Builds messages written by the server rather than a kernel.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    pub session: String,
    pub username: String,
}

impl MessageBuilder {
    /// A message with `content` already serialized; returns its header too, so callers need
    /// not parse back what they just wrote.
    pub fn build(
        &self,
        msg_type: &str,
        date: String,
        parent_header: Bytes,
        content: Bytes,
    ) -> (Header, RawMessage) {
        let header = Header::new(msg_type, &self.session, &self.username, date);
        let message = RawMessage {
            header: Bytes::from(serde_json::to_vec(&header).expect("header serializes")),
            parent_header,
            metadata: Bytes::from_static(b"{}"),
            content,
            buffers: Vec::new(),
        };
        (header, message)
    }

    pub fn message(
        &self,
        msg_type: &str,
        date: String,
        parent_header: Bytes,
        content: &serde_json::Value,
    ) -> RawMessage {
        let content = Bytes::from(serde_json::to_vec(content).expect("json value serializes"));
        self.build(msg_type, date, parent_header, content).1
    }
}
