//! The kernel WebSocket framings jupyter_server speaks.
//!
//! `v1.kernel.websocket.jupyter.org`: one binary frame holding a count of offsets, the offsets
//! (little-endian u64), the channel name, then the message parts and buffers back to back.
//! The legacy protocol: a JSON text frame with `channel`, `header`, `parent_header`, `metadata`,
//! `content` (and a binary frame with big-endian u32 offsets when the message has buffers).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::{Channel, RawMessage};

/// The subprotocol name clients offer to get the v1 binary framing.
pub const V1_SUBPROTOCOL: &str = "v1.kernel.websocket.jupyter.org";

/// Why a WebSocket frame is not a kernel message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    #[error("frame is too short for its offset table")]
    Truncated,
    #[error("frame offsets are out of order or out of bounds")]
    BadOffsets,
    #[error("frame names an unknown channel `{0}`")]
    UnknownChannel(String),
    #[error("frame has {0} message parts, at least 4 are required")]
    TooFewParts(usize),
    #[error("frame is not valid JSON: {0}")]
    BadJson(String),
    #[error("frame lacks the `{0}` field")]
    MissingField(&'static str),
}

/// Encodes a message for the v1 protocol.
pub fn encode_v1(channel: Channel, message: &RawMessage) -> Bytes {
    let channel_name = channel.as_str().as_bytes();
    let parts: [&Bytes; 4] = [
        &message.header,
        &message.parent_header,
        &message.metadata,
        &message.content,
    ];
    let n_parts = 4 + message.buffers.len();
    let n_offsets = 2 + n_parts;
    let header_len = 8 * (1 + n_offsets);
    let total = header_len + channel_name.len() + message.len_bytes();
    let mut out = BytesMut::with_capacity(total);
    out.put_u64_le(n_offsets as u64);
    let mut offset = header_len as u64;
    out.put_u64_le(offset);
    offset += channel_name.len() as u64;
    out.put_u64_le(offset);
    for part in parts.iter().copied().chain(message.buffers.iter()) {
        offset += part.len() as u64;
        out.put_u64_le(offset);
    }
    out.put_slice(channel_name);
    for part in parts.iter().copied().chain(message.buffers.iter()) {
        out.put_slice(part);
    }
    debug_assert_eq!(out.len(), total);
    out.freeze()
}

/// Decodes a v1 frame into its channel and message.
pub fn decode_v1(frame: Bytes) -> Result<(Channel, RawMessage), WsError> {
    let read_u64 = |at: usize| -> Result<usize, WsError> {
        let bytes = frame.get(at..at + 8).ok_or(WsError::Truncated)?;
        let value = u64::from_le_bytes(bytes.try_into().expect("slice of 8"));
        usize::try_from(value).map_err(|_| WsError::BadOffsets)
    };
    let n_offsets = read_u64(0)?;
    if n_offsets < 2 || n_offsets > frame.len() / 8 {
        return Err(WsError::Truncated);
    }
    let mut offsets = Vec::with_capacity(n_offsets);
    for i in 0..n_offsets {
        offsets.push(read_u64(8 * (i + 1))?);
    }
    if offsets.windows(2).any(|w| w[0] > w[1]) || offsets[n_offsets - 1] > frame.len() {
        return Err(WsError::BadOffsets);
    }
    if offsets[0] < 8 * (n_offsets + 1) {
        return Err(WsError::BadOffsets);
    }
    let channel_name = std::str::from_utf8(&frame[offsets[0]..offsets[1]])
        .map_err(|_| WsError::UnknownChannel("<not utf-8>".into()))?;
    let channel =
        Channel::parse(channel_name).ok_or_else(|| WsError::UnknownChannel(channel_name.into()))?;
    let mut parts: Vec<Bytes> = offsets
        .windows(2)
        .skip(1)
        .map(|w| frame.slice(w[0]..w[1]))
        .collect();
    if parts.len() < 4 {
        return Err(WsError::TooFewParts(parts.len()));
    }
    let buffers = parts.split_off(4);
    let mut parts = parts.into_iter();
    let mut next = || parts.next().expect("four parts checked");
    let message = RawMessage {
        header: next(),
        parent_header: next(),
        metadata: next(),
        content: next(),
        buffers,
    };
    Ok((channel, message))
}

fn json_or_empty(part: &Bytes) -> &[u8] {
    if part.is_empty() {
        b"{}"
    } else {
        part
    }
}

/// Encodes a message for the legacy protocol: a JSON text frame, or a binary frame when the
/// message carries buffers. The JSON is assembled from the raw parts without re-parsing them.
/// Returns `(is_binary, bytes)`.
pub fn encode_legacy(
    channel: Channel,
    msg_id: &str,
    msg_type: &str,
    message: &RawMessage,
) -> (bool, Bytes) {
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut json = Vec::with_capacity(message.len_bytes() + 128);
    json.extend_from_slice(b"{\"header\":");
    json.extend_from_slice(json_or_empty(&message.header));
    json.extend_from_slice(b",\"msg_id\":");
    json.extend_from_slice(quoted(msg_id).as_bytes());
    json.extend_from_slice(b",\"msg_type\":");
    json.extend_from_slice(quoted(msg_type).as_bytes());
    json.extend_from_slice(b",\"parent_header\":");
    json.extend_from_slice(json_or_empty(&message.parent_header));
    json.extend_from_slice(b",\"metadata\":");
    json.extend_from_slice(json_or_empty(&message.metadata));
    json.extend_from_slice(b",\"content\":");
    json.extend_from_slice(json_or_empty(&message.content));
    json.extend_from_slice(b",\"buffers\":[],\"channel\":");
    json.extend_from_slice(quoted(channel.as_str()).as_bytes());
    json.push(b'}');
    if message.buffers.is_empty() {
        return (false, Bytes::from(json));
    }
    let n_bufs = 1 + message.buffers.len();
    let mut out = BytesMut::with_capacity(4 * (n_bufs + 1) + json.len() + message.len_bytes());
    out.put_u32(n_bufs as u32);
    let mut offset = 4 * (n_bufs as u32 + 1);
    out.put_u32(offset);
    offset += json.len() as u32;
    for buffer in &message.buffers[..message.buffers.len() - 1] {
        out.put_u32(offset);
        offset += buffer.len() as u32;
    }
    out.put_u32(offset);
    out.put_slice(&json);
    for buffer in &message.buffers {
        out.put_slice(buffer);
    }
    (true, out.freeze())
}

/// Decodes a legacy JSON text frame.
pub fn decode_legacy_text(text: &[u8]) -> Result<(Channel, RawMessage), WsError> {
    decode_legacy_json(text, Vec::new())
}

/// Decodes a legacy binary frame (big-endian u32 offsets; the first part is the JSON message).
pub fn decode_legacy_binary(frame: Bytes) -> Result<(Channel, RawMessage), WsError> {
    let read_u32 = |at: usize| -> Result<usize, WsError> {
        let bytes = frame.get(at..at + 4).ok_or(WsError::Truncated)?;
        Ok(u32::from_be_bytes(bytes.try_into().expect("slice of 4")) as usize)
    };
    let n_bufs = read_u32(0)?;
    if n_bufs == 0 || n_bufs > frame.len() / 4 {
        return Err(WsError::Truncated);
    }
    let mut offsets = Vec::with_capacity(n_bufs + 1);
    for i in 0..n_bufs {
        offsets.push(read_u32(4 * (i + 1))?);
    }
    offsets.push(frame.len());
    if offsets.windows(2).any(|w| w[0] > w[1]) || offsets[0] < 4 * (n_bufs + 1) {
        return Err(WsError::BadOffsets);
    }
    let json = frame.slice(offsets[0]..offsets[1]);
    let buffers = offsets
        .windows(2)
        .skip(1)
        .map(|w| frame.slice(w[0]..w[1]))
        .collect();
    decode_legacy_json(&json, buffers)
}

fn decode_legacy_json(text: &[u8], buffers: Vec<Bytes>) -> Result<(Channel, RawMessage), WsError> {
    // Each part is kept as the bytes the client wrote, as in the v1 framing, so the server reads
    // a part (strictly, where it must) from the same bytes the kernel will get.
    #[derive(serde::Deserialize)]
    struct Legacy<'a> {
        #[serde(borrow, default)]
        channel: Option<&'a RawValue>,
        #[serde(borrow, default)]
        header: Option<&'a RawValue>,
        #[serde(borrow, default)]
        parent_header: Option<&'a RawValue>,
        #[serde(borrow, default)]
        metadata: Option<&'a RawValue>,
        #[serde(borrow, default)]
        content: Option<&'a RawValue>,
    }
    let legacy: Legacy<'_> =
        serde_json::from_slice(text).map_err(|e| WsError::BadJson(e.to_string()))?;
    // jupyter_server assumes shell when a legacy message names no channel.
    let channel_name = match legacy.channel.map(RawValue::get) {
        None | Some("null") => "shell".to_owned(),
        Some(raw) => {
            serde_json::from_str::<String>(raw).map_err(|_| WsError::MissingField("channel"))?
        }
    };
    let channel =
        Channel::parse(&channel_name).ok_or(WsError::UnknownChannel(channel_name.clone()))?;
    let part =
        |raw: Option<&RawValue>, name: &'static str, required: bool| match raw.map(RawValue::get) {
            Some(raw) if raw.starts_with('{') => Ok(Bytes::copy_from_slice(raw.as_bytes())),
            None | Some("null") if !required => Ok(Bytes::from_static(b"{}")),
            _ => Err(WsError::MissingField(name)),
        };
    let message = RawMessage {
        header: part(legacy.header, "header", true)?,
        parent_header: part(legacy.parent_header, "parent_header", false)?,
        metadata: part(legacy.metadata, "metadata", false)?,
        content: part(legacy.content, "content", false)?,
        buffers,
    };
    Ok((channel, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(buffers: Vec<Bytes>) -> RawMessage {
        RawMessage {
            header: Bytes::from_static(br#"{"msg_id":"m1","msg_type":"stream"}"#),
            parent_header: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from_static(br#"{"name":"stdout","text":"2\n"}"#),
            buffers,
        }
    }

    #[test]
    fn v1_round_trips_with_buffers() {
        let original = message(vec![Bytes::from_static(b"abc"), Bytes::new()]);
        let frame = encode_v1(Channel::Iopub, &original);
        let (channel, back) = decode_v1(frame).unwrap();
        assert_eq!(channel, Channel::Iopub);
        assert_eq!(back, original);
    }

    #[test]
    fn v1_layout_matches_jupyter_server() {
        // jupyter_server's serialize_msg_to_ws_v1 for channel "shell" and parts a, b, c, d.
        let original = RawMessage {
            header: Bytes::from_static(b"a"),
            parent_header: Bytes::from_static(b"b"),
            metadata: Bytes::from_static(b"c"),
            content: Bytes::from_static(b"d"),
            buffers: vec![],
        };
        let frame = encode_v1(Channel::Shell, &original);
        expect_test::expect![[r#"060000000000000038000000000000003d000000000000003e000000000000003f00000000000000400000000000000041000000000000007368656c6c61626364"#]]
            .assert_eq(&hex::encode(&frame));
    }

    #[test]
    fn v1_rejects_hostile_offsets() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 8],
            [
                2u64.to_le_bytes(),
                0u64.to_le_bytes(),
                1000u64.to_le_bytes(),
            ]
            .concat(),
            [
                3u64.to_le_bytes(),
                32u64.to_le_bytes(),
                37u64.to_le_bytes(),
                33u64.to_le_bytes(),
            ]
            .concat(),
        ];
        for case in cases {
            assert!(decode_v1(Bytes::from(case)).is_err());
        }
    }

    #[test]
    fn legacy_text_is_json_with_channel() {
        let (binary, frame) = encode_legacy(Channel::Iopub, "m1", "stream", &message(vec![]));
        assert!(!binary);
        let value: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        expect_test::expect![[r#"{"buffers":[],"channel":"iopub","content":{"name":"stdout","text":"2\n"},"header":{"msg_id":"m1","msg_type":"stream"},"metadata":{},"msg_id":"m1","msg_type":"stream","parent_header":{}}"#]]
            .assert_eq(&value.to_string());
        let (channel, back) = decode_legacy_text(&frame).unwrap();
        assert_eq!(channel, Channel::Iopub);
        assert_eq!(back.content, message(vec![]).content);
    }

    #[test]
    fn legacy_binary_round_trips_buffers() {
        let original = message(vec![
            Bytes::from_static(b"\x01\x02"),
            Bytes::from_static(b"z"),
        ]);
        let (binary, frame) = encode_legacy(Channel::Shell, "m1", "stream", &original);
        assert!(binary);
        let (channel, back) = decode_legacy_binary(frame).unwrap();
        assert_eq!(channel, Channel::Shell);
        assert_eq!(back.buffers, original.buffers);
    }

    #[test]
    fn legacy_parts_are_kept_as_written() {
        let text = br#"{"channel":"shell","header":{"msg_type":"execute_request"},"content":{"code":"a","code":"b"}}"#;
        let (_, message) = decode_legacy_text(text).unwrap();
        // Not resolved here: the manager reads code-carrying content strictly and refuses it.
        assert_eq!(&message.content[..], br#"{"code":"a","code":"b"}"#);
        assert!(matches!(
            decode_legacy_text(br#"{"header":{},"content":{"code":"a"},"content":{"code":"b"}}"#),
            Err(WsError::BadJson(_))
        ));
    }

    #[test]
    fn legacy_rejects_bad_json_and_channels() {
        assert!(matches!(
            decode_legacy_text(b"{nope"),
            Err(WsError::BadJson(_))
        ));
        assert_eq!(
            decode_legacy_text(br#"{"header":{}}"#).unwrap().0,
            Channel::Shell
        );
        assert_eq!(
            decode_legacy_text(br#"{"header":{},"channel":7}"#),
            Err(WsError::MissingField("channel"))
        );
        assert_eq!(
            decode_legacy_text(br#"{"channel":"bogus","header":{}}"#),
            Err(WsError::UnknownChannel("bogus".into()))
        );
        assert_eq!(
            decode_legacy_text(br#"{"channel":"shell","header":7}"#),
            Err(WsError::MissingField("header"))
        );
    }
}
