//! Message headers, and building the few messages the server writes itself (status, errors,
//! replies to blocked cells).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::RawMessage;

/// The messaging protocol version the server speaks.
pub const PROTOCOL_VERSION: &str = "5.3";

/// A Jupyter message header. Unknown fields are ignored; missing ones default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    #[serde(default)]
    pub msg_id: String,
    #[serde(default)]
    pub msg_type: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub version: String,
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
    pub fn message(
        &self,
        msg_type: &str,
        date: String,
        parent_header: Bytes,
        content: &serde_json::Value,
    ) -> RawMessage {
        let header = Header::new(msg_type, &self.session, &self.username, date);
        RawMessage {
            header: Bytes::from(serde_json::to_vec(&header).expect("header serializes")),
            parent_header,
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from(serde_json::to_vec(content).expect("json value serializes")),
            buffers: Vec::new(),
        }
    }

    /// An iopub `status` message with the given `execution_state`.
    pub fn status(&self, state: &str, date: String, parent_header: Bytes) -> RawMessage {
        self.message("status", date, parent_header, &serde_json::json!({ "execution_state": state }))
    }
}
