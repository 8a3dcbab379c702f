//! Kernel wire frames: `[identities…, <IDS|MSG>, signature, header, parent_header, metadata,
//! content, buffers…]`, signed with HMAC-SHA256 over the four JSON parts.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The frame that separates ZeroMQ routing identities from the message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// The five kernel channels, named as Jupyter names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Shell,
    Iopub,
    Stdin,
    Control,
    Heartbeat,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Shell => "shell",
            Channel::Iopub => "iopub",
            Channel::Stdin => "stdin",
            Channel::Control => "control",
            Channel::Heartbeat => "hb",
        }
    }

    pub fn parse(name: &str) -> Option<Channel> {
        Some(match name {
            "shell" => Channel::Shell,
            "iopub" => Channel::Iopub,
            "stdin" => Channel::Stdin,
            "control" => Channel::Control,
            "hb" => Channel::Heartbeat,
            _ => return None,
        })
    }
}

/// Why a frame sequence is not a valid Jupyter message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message has no <IDS|MSG> delimiter")]
    NoDelimiter,
    #[error("message has {0} frames after the delimiter, at least 5 are required")]
    TooFewFrames(usize),
    #[error("message signature does not match")]
    BadSignature,
    #[error("message part `{part}` is not valid JSON: {detail}")]
    BadJson { part: &'static str, detail: String },
}

/// One Jupyter message with each JSON part kept as the raw bytes the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub header: Bytes,
    pub parent_header: Bytes,
    pub metadata: Bytes,
    pub content: Bytes,
    pub buffers: Vec<Bytes>,
}

impl RawMessage {
    /// Parses the header into its typed form (small; done for routing).
    pub fn parse_header(&self) -> Result<crate::Header, WireError> {
        serde_json::from_slice(&self.header).map_err(|e| WireError::BadJson {
            part: "header",
            detail: e.to_string(),
        })
    }

    /// The `msg_id` and `session` of the parent header, if it names them.
    pub fn parent_ids(&self) -> (Option<String>, Option<String>) {
        #[derive(serde::Deserialize)]
        struct Parent {
            msg_id: Option<String>,
            session: Option<String>,
        }
        match serde_json::from_slice::<Parent>(&self.parent_header) {
            Ok(parent) => (parent.msg_id, parent.session),
            Err(_) => (None, None),
        }
    }

    /// Total size of all parts, in bytes.
    pub fn len_bytes(&self) -> usize {
        self.header.len()
            + self.parent_header.len()
            + self.metadata.len()
            + self.content.len()
            + self.buffers.iter().map(Bytes::len).sum::<usize>()
    }
}

/// Signs and verifies messages with a kernel's key (`signature_scheme: hmac-sha256`).
/// An empty key disables signing, as the Jupyter specification allows.
#[derive(Clone)]
pub struct Signer {
    mac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("enabled", &self.mac.is_some())
            .finish()
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        let mac = if key.is_empty() {
            None
        } else {
            Some(Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length"))
        };
        Signer { mac }
    }

    fn digest(&self, parts: [&[u8]; 4]) -> Option<[u8; 32]> {
        let mut mac = self.mac.clone()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().into())
    }

    /// The lowercase hex signature of a message, empty when signing is off.
    pub fn sign(&self, message: &RawMessage) -> Bytes {
        match self.digest([
            &message.header,
            &message.parent_header,
            &message.metadata,
            &message.content,
        ]) {
            Some(digest) => Bytes::from(hex::encode(digest)),
            None => Bytes::new(),
        }
    }

    /// Frames for a ZeroMQ send: identities, delimiter, signature, parts, buffers.
    pub fn to_frames(&self, identities: &[Bytes], message: &RawMessage) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(identities.len() + 6 + message.buffers.len());
        frames.extend(identities.iter().cloned());
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(self.sign(message));
        frames.push(message.header.clone());
        frames.push(message.parent_header.clone());
        frames.push(message.metadata.clone());
        frames.push(message.content.clone());
        frames.extend(message.buffers.iter().cloned());
        frames
    }

    /// Splits received frames into identities and a verified message.
    pub fn from_frames(&self, frames: Vec<Bytes>) -> Result<(Vec<Bytes>, RawMessage), WireError> {
        let delimiter_idx = frames
            .iter()
            .position(|frame| frame.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let after = frames.len() - delimiter_idx - 1;
        if after < 5 {
            return Err(WireError::TooFewFrames(after));
        }
        let mut frames = frames;
        let mut rest = frames.split_off(delimiter_idx);
        let identities = frames;
        let mut parts = rest.drain(1..);
        let signature = parts.next().unwrap_or_default();
        let header = parts.next().unwrap_or_default();
        let parent_header = parts.next().unwrap_or_default();
        let metadata = parts.next().unwrap_or_default();
        let content = parts.next().unwrap_or_default();
        let buffers: Vec<Bytes> = parts.collect();
        if let Some(expected) = self.digest([&header, &parent_header, &metadata, &content]) {
            let given = hex::decode(&signature).map_err(|_| WireError::BadSignature)?;
            if !constant_time_eq(&given, &expected) {
                return Err(WireError::BadSignature);
            }
        }
        Ok((
            identities,
            RawMessage {
                header,
                parent_header,
                metadata,
                content,
                buffers,
            },
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> RawMessage {
        RawMessage {
            header: Bytes::from_static(br#"{"msg_id":"a","msg_type":"execute_request"}"#),
            parent_header: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from_static(br#"{"code":"1+1"}"#),
            buffers: vec![Bytes::from_static(b"\x00\x01")],
        }
    }

    #[test]
    fn signed_frames_round_trip() {
        let signer = Signer::new(b"secret");
        let frames = signer.to_frames(&[Bytes::from_static(b"id")], &message());
        let (ids, back) = signer.from_frames(frames).unwrap();
        assert_eq!(ids, vec![Bytes::from_static(b"id")]);
        assert_eq!(back, message());
    }

    #[test]
    fn signature_matches_the_reference_hmac() {
        // The value computed by Python: hmac.new(b"secret", b"".join(parts), hashlib.sha256).
        let signer = Signer::new(b"secret");
        let signature = signer.sign(&message());
        expect_test::expect!["4f6ff640b6abd97a11ac4c4900c50447e43d3409a29865d8390d80aa774c7dcd"]
            .assert_eq(std::str::from_utf8(&signature).unwrap());
    }

    #[test]
    fn tampered_content_is_rejected() {
        let signer = Signer::new(b"secret");
        let mut frames = signer.to_frames(&[], &message());
        let last = frames.len() - 2;
        frames[last] = Bytes::from_static(br#"{"code":"evil"}"#);
        assert_eq!(signer.from_frames(frames), Err(WireError::BadSignature));
    }

    #[test]
    fn short_and_undelimited_messages_are_rejected() {
        let signer = Signer::new(b"k");
        assert_eq!(
            signer.from_frames(vec![Bytes::from_static(b"x")]),
            Err(WireError::NoDelimiter)
        );
        let frames = vec![Bytes::from_static(DELIMITER), Bytes::new(), Bytes::new()];
        assert_eq!(signer.from_frames(frames), Err(WireError::TooFewFrames(2)));
    }

    #[test]
    fn empty_key_disables_signing() {
        let signer = Signer::new(b"");
        assert!(signer.sign(&message()).is_empty());
        let frames = signer.to_frames(&[], &message());
        assert!(signer.from_frames(frames).is_ok());
    }
}
