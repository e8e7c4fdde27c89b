//! The tunnel transport: one multiplexed, mutually authenticated connection
//! between an agent and the hub, carrying independent bidirectional streams.
//!
//! Everything above this module sees only [`Connection`], [`SendHalf`] and
//! [`RecvHalf`]. QUIC (quinn) is the one transport today; a TLS-over-TCP
//! fallback adds a variant to these enums and nothing above changes.

pub mod quic;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Stream priorities: higher is sent first when both have data queued.
pub const PRIORITY_CONTROL: i32 = 20;
pub const PRIORITY_REALTIME: i32 = 10;
pub const PRIORITY_RELOAD: i32 = 0;

/// Application error code sent when a stream is abandoned (query cancelled).
pub const CODE_CANCELLED: u32 = 1;
/// Application close code for an orderly shutdown.
pub const CODE_SHUTDOWN: u32 = 0;
/// Application close code when the peer was refused (unknown or revoked agent).
pub const CODE_REFUSED: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// One tunnel connection.
#[derive(Clone)]
pub enum Connection {
    Quic(quinn::Connection),
}

impl Connection {
    pub async fn open_bi(&self) -> Result<(SendHalf, RecvHalf), TransportError> {
        match self {
            Connection::Quic(c) => {
                let (s, r) = c.open_bi().await?;
                Ok((SendHalf::Quic(s), RecvHalf::Quic(r)))
            }
        }
    }

    pub async fn accept_bi(&self) -> Result<(SendHalf, RecvHalf), TransportError> {
        match self {
            Connection::Quic(c) => {
                let (s, r) = c.accept_bi().await?;
                Ok((SendHalf::Quic(s), RecvHalf::Quic(r)))
            }
        }
    }

    pub fn close(&self, code: u32, reason: &str) {
        match self {
            Connection::Quic(c) => c.close(code.into(), reason.as_bytes()),
        }
    }

    /// Resolves when the connection is gone, with the reason.
    pub async fn closed(&self) -> TransportError {
        match self {
            Connection::Quic(c) => TransportError::Connection(c.closed().await),
        }
    }

    pub fn remote_address(&self) -> SocketAddr {
        match self {
            Connection::Quic(c) => c.remote_address(),
        }
    }

    pub fn rtt(&self) -> Duration {
        match self {
            Connection::Quic(c) => c.rtt(),
        }
    }

    /// Stream frames sent so far (diagnostics, and tests of which connection carries what).
    pub fn stream_frames_sent(&self) -> u64 {
        match self {
            Connection::Quic(c) => c.stats().frame_tx.stream,
        }
    }

    /// A stable id for this connection, for logs and replacement checks.
    pub fn id(&self) -> usize {
        match self {
            Connection::Quic(c) => c.stable_id(),
        }
    }

    /// The certificate chain the peer authenticated with.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match self {
            Connection::Quic(c) => c
                .peer_identity()?
                .downcast::<Vec<CertificateDer<'static>>>()
                .ok()
                .map(|b| *b),
        }
    }
}

/// The sending half of a stream.
pub enum SendHalf {
    Quic(quinn::SendStream),
}

impl SendHalf {
    pub fn set_priority(&self, priority: i32) {
        match self {
            SendHalf::Quic(s) => {
                let _ = s.set_priority(priority);
            }
        }
    }

    /// Graceful end of the stream once everything written is delivered.
    pub fn finish(&mut self) {
        match self {
            SendHalf::Quic(s) => {
                let _ = s.finish();
            }
        }
    }

    /// Abandons the stream: the peer sees it reset with `code`.
    pub fn reset(&mut self, code: u32) {
        match self {
            SendHalf::Quic(s) => {
                let _ = s.reset(code.into());
            }
        }
    }

    /// Resolves when the peer no longer wants the data (it stopped reading
    /// or the connection is gone), which the agent treats as a cancel. Also
    /// resolves once a finished stream has been fully acknowledged.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        match self {
            SendHalf::Quic(s) => {
                let f = s.stopped();
                async move {
                    let _ = f.await;
                }
            }
        }
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SendHalf::Quic(s) => Pin::new(s).poll_write(cx, buf).map_err(Into::into),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SendHalf::Quic(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SendHalf::Quic(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The receiving half of a stream.
pub enum RecvHalf {
    Quic(quinn::RecvStream),
}

impl RecvHalf {
    /// Tells the peer to stop sending (cancels the query it is answering).
    pub fn stop(&mut self, code: u32) {
        match self {
            RecvHalf::Quic(r) => {
                let _ = r.stop(code.into());
            }
        }
    }
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RecvHalf::Quic(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}
