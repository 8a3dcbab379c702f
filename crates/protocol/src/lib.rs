//! The Jupyter messaging protocol as bytes: kernel wire frames, HMAC-SHA256 signing, the two
//! kernel WebSocket framings (`v1.kernel.websocket.jupyter.org` and the legacy JSON one), and
//! connection files.
//!
//! This crate is pure: it does no IO, reads no clock except through [`Header::new`] callers'
//! timestamps, and knows nothing of sockets, kernels' processes or HTTP. Message parts stay as the
//! raw JSON bytes the peer sent; only the small `header` and `parent_header` parts are ever parsed,
//! so large outputs are relayed without being decoded. [`parse_strict`] is for the few parts a
//! server must read exactly as a kernel will (the code a client asks a kernel to run).

mod connection;
mod header;
mod strict;
mod wire;
mod ws;

pub use connection::{ConnectionInfo, Transport};
pub use header::{Header, MessageBuilder, PROTOCOL_VERSION};
pub use strict::{parse_strict, StrictJsonError};
pub use wire::{Channel, RawMessage, Signer, WireError, DELIMITER};
pub use ws::{
    decode_legacy_binary, decode_legacy_text, decode_v1, encode_legacy, encode_v1, WsError,
    V1_SUBPROTOCOL,
};
