//! The tunnel protocol: generated protobuf messages, framing and Arrow IPC helpers.
//!
//! The wire format is documented in `proto/gatehouse/v1/tunnel.proto`.

pub mod catalog;
pub mod frame;
pub mod ipc;

/// Messages generated from `proto/gatehouse/v1/*.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/gatehouse.v1.rs"));
}

/// Protocol version carried in `Hello`; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// The ALPN both ends of the tunnel insist on.
pub const ALPN: &[u8] = b"gatehouse/1";

pub use frame::{FrameError, FrameReader, FrameWriter};
