//! QUIC endpoints for both ends of the tunnel (quinn over rustls, TLS 1.3).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, EndpointConfig, TokioRuntime, TransportConfig, VarInt};

use super::TransportError;
use super::tls::TlsError;

/// Per-stream receive window: a slow Flight client holds at most this much
/// of one query in the receiver's buffers (the memory bound per query).
pub const STREAM_WINDOW: u32 = 8 << 20;
/// Per-connection receive window across all streams.
pub const CONNECTION_WINDOW: u32 = 64 << 20;
/// UDP socket buffers asked of the kernel (it may grant less).
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Transport settings shared by both ends. `accept_streams` is how many
/// concurrent bidirectional streams the peer may open towards us.
pub fn transport_config(accept_streams: u32) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(accept_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    t
}

/// A UDP socket with enlarged buffers, as quinn leaves that to the application.
fn udp_socket(addr: SocketAddr) -> Result<UdpSocket, TransportError> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(false);
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// The hub's listening endpoint.
pub fn server_endpoint(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    accept_streams: u32,
) -> Result<Endpoint, TransportError> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(accept_streams)));
    let socket = udp_socket(addr)?;
    Ok(Endpoint::new(
        EndpointConfig::default(),
        Some(cfg),
        socket,
        Arc::new(TokioRuntime),
    )?)
}

/// The agent's client endpoint; it never accepts connections.
/// The QUIC client configuration for `tls` (one connection's worth).
pub fn client_config(
    tls: rustls::ClientConfig,
    accept_streams: u32,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(accept_streams)));
    Ok(cfg)
}

pub fn client_endpoint(
    bind: SocketAddr,
    tls: rustls::ClientConfig,
    accept_streams: u32,
) -> Result<Endpoint, TransportError> {
    let cfg = client_config(tls, accept_streams)?;
    let socket = udp_socket(bind)?;
    let mut ep = Endpoint::new(
        EndpointConfig::default(),
        None,
        socket,
        Arc::new(TokioRuntime),
    )?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}
