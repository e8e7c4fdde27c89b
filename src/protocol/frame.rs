//! Length-delimited protobuf frames, with an optional raw body after a frame.
//!
//! Every frame is a 4-byte big-endian length and then that many protobuf bytes.
//! A batch frame announces `body_len` raw bytes that follow it, so Arrow bodies
//! cross the tunnel without being copied into a protobuf message.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest protobuf frame either side accepts (Arrow headers, hello, requests).
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("tunnel i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stream ended in the middle of a frame")]
    Truncated,
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// Reads frames from one direction of a stream.
pub struct FrameReader<R> {
    inner: R,
    max_body: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_body: usize) -> Self {
        Self { inner, max_body }
    }

    /// Reads the next frame; `Ok(None)` is a clean end of stream between frames.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        let mut len = [0u8; 4];
        match read_full(&mut self.inner, &mut len).await? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(FrameError::Truncated),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let mut buf = BytesMut::zeroed(len);
        self.inner
            .read_exact(&mut buf)
            .await
            .map_err(truncated_on_eof)?;
        Ok(Some(M::decode(buf.freeze())?))
    }

    /// Reads a frame that must be there.
    pub async fn expect<M: Message + Default>(&mut self, what: &str) -> Result<M, FrameError> {
        self.next()
            .await?
            .ok_or_else(|| FrameError::Protocol(format!("stream ended before {what}")))
    }

    /// Reads a raw body announced by the previous frame.
    pub async fn body(&mut self, len: u64) -> Result<Bytes, FrameError> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max_body {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_body,
            });
        }
        // Read straight into uninitialised capacity: bodies are megabytes and
        // this is the hub's per-batch hot path, so no zeroing first.
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let want = len - buf.len();
            if self.inner.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
                return Err(FrameError::Truncated);
            }
        }
        Ok(buf.freeze())
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to one direction of a stream.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(256),
        }
    }

    pub async fn send<M: Message>(&mut self, msg: &M) -> Result<(), FrameError> {
        self.encode(msg)?;
        self.inner.write_all(&self.buf).await?;
        Ok(())
    }

    /// Sends a frame followed by its raw body.
    pub async fn send_with_body<M: Message>(
        &mut self,
        msg: &M,
        body: &[u8],
    ) -> Result<(), FrameError> {
        self.encode(msg)?;
        self.inner.write_all(&self.buf).await?;
        self.inner.write_all(body).await?;
        Ok(())
    }

    fn encode<M: Message>(&mut self, msg: &M) -> Result<(), FrameError> {
        let len = msg.encoded_len();
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        self.buf.clear();
        self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        msg.encode(&mut self.buf)
            .map_err(|e| FrameError::Protocol(e.to_string()))?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.inner.flush().await?;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn truncated_on_eof(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::pb;

    #[tokio::test]
    async fn round_trip_with_body() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b, 1024);
        let writer = async move {
            let f = pb::BatchFrame {
                ipc_header: Bytes::from_static(b"hdr"),
                rows: 3,
                body_len: 5,
            };
            w.send_with_body(&f, b"12345").await.unwrap();
            let end = pb::EndFrame {
                rows: 3,
                ..Default::default()
            };
            w.send(&end).await.unwrap();
        };
        let reader = async move {
            let f: pb::BatchFrame = r.expect("batch").await.unwrap();
            assert_eq!(f.rows, 3);
            assert_eq!(&r.body(f.body_len).await.unwrap()[..], b"12345");
            // The body read stops exactly at its end: the next frame is intact.
            let end: pb::EndFrame = r.expect("end").await.unwrap();
            assert_eq!(end.rows, 3);
            assert!(r.next::<pb::EndFrame>().await.unwrap().is_none());
        };
        tokio::join!(writer, reader);
    }

    #[tokio::test]
    async fn rejects_oversized_and_garbage_frames() {
        let mut huge = (MAX_FRAME_LEN as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        let mut r = FrameReader::new(&huge[..], 1024);
        assert!(matches!(
            r.next::<pb::Request>().await,
            Err(FrameError::TooLarge { .. })
        ));

        let garbage = [0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        let mut r = FrameReader::new(&garbage[..], 1024);
        assert!(matches!(
            r.next::<pb::Request>().await,
            Err(FrameError::Decode(_))
        ));

        let cut = [0, 0, 0, 9, 1, 2];
        let mut r = FrameReader::new(&cut[..], 1024);
        assert!(matches!(
            r.next::<pb::Request>().await,
            Err(FrameError::Truncated)
        ));

        let mut r = FrameReader::new(&[0u8, 0][..], 1024);
        assert!(matches!(
            r.next::<pb::Request>().await,
            Err(FrameError::Truncated)
        ));

        let mut r = FrameReader::new(&[][..], 16);
        assert!(matches!(r.body(17).await, Err(FrameError::TooLarge { .. })));
    }
}
