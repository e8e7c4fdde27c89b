//! Running a request on an agent and turning its frames into Flight data.
//!
//! Batches are forwarded as the agent encoded them: the IPC header becomes
//! `FlightData.data_header` and the raw body `data_body`, with no decoding.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::FlightData;
use bytes::Bytes;
use futures::Stream;
use tonic::Status;

use super::registry::{AgentHandle, InflightGuard};
use crate::protocol::{FrameReader, FrameWriter, catalog, ipc, pb};
use crate::transport::{CODE_CANCELLED, PRIORITY_REALTIME, PRIORITY_RELOAD, RecvHalf, SendHalf};

/// Largest batch body the hub accepts from an agent.
pub const MAX_BODY: usize = 256 << 20;

/// A query whose schema has arrived and whose batches are waiting on the stream.
pub struct Running {
    pub schema: SchemaRef,
    source: String,
    schema_header: Bytes,
    reader: FrameReader<RecvHalf>,
    _send: SendHalf,
    _inflight: InflightGuard,
    finished: bool,
    /// The hub's audit record of this query, written when it ends.
    pub audit: Option<super::audit::Entry>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away: tell the agent to stop (it cancels the database query).
            self.reader.get_mut().stop(CODE_CANCELLED);
        }
    }
}

pub fn error_status(source: &str, e: &pb::ErrorFrame) -> Status {
    let msg = format!("source {source:?}: {}", e.message);
    match pb::ErrorCode::try_from(e.code).unwrap_or(pb::ErrorCode::Unspecified) {
        pb::ErrorCode::InvalidRequest => Status::invalid_argument(msg),
        pb::ErrorCode::UnknownSource => Status::not_found(msg),
        pb::ErrorCode::ModeNotAllowed | pb::ErrorCode::NotAllowed => Status::permission_denied(msg),
        pb::ErrorCode::Database if e.retryable => Status::unavailable(msg),
        pb::ErrorCode::Database => Status::invalid_argument(msg),
        pb::ErrorCode::LimitExceeded | pb::ErrorCode::Busy => Status::resource_exhausted(msg),
        pb::ErrorCode::Timeout => Status::deadline_exceeded(msg),
        pb::ErrorCode::Unavailable => Status::unavailable(msg),
        pb::ErrorCode::Cancelled => Status::cancelled(msg),
        pb::ErrorCode::Internal | pb::ErrorCode::Unspecified => Status::internal(msg),
    }
}

fn lost(agent: &AgentHandle, e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!(
        "lost the agent {:?} while running the query ({e}); retry, the agent reconnects by itself",
        agent.id
    ))
}

async fn open(
    agent: &Arc<AgentHandle>,
    request: &pb::Request,
    priority: i32,
) -> Result<(FrameReader<RecvHalf>, SendHalf), Status> {
    let conn = agent.connection(priority == PRIORITY_REALTIME);
    let (send, recv) = conn.open_bi().await.map_err(|e| lost(agent, e))?;
    send.set_priority(priority);
    let mut writer = FrameWriter::new(send);
    writer.send(request).await.map_err(|e| lost(agent, e))?;
    let mut send = writer.into_inner();
    send.finish();
    Ok((FrameReader::new(recv, MAX_BODY), send))
}

async fn first_frame(
    agent: &AgentHandle,
    source: &str,
    reader: &mut FrameReader<RecvHalf>,
) -> Result<pb::response_frame::Frame, Status> {
    match reader.next::<pb::ResponseFrame>().await {
        Ok(Some(pb::ResponseFrame {
            frame: Some(pb::response_frame::Frame::Error(e)),
        })) => Err(error_status(source, &e)),
        Ok(Some(pb::ResponseFrame { frame: Some(f) })) => Ok(f),
        Ok(Some(_)) => Err(Status::internal("agent sent an empty frame")),
        Ok(None) => Err(lost(agent, "stream closed before any answer")),
        Err(e) => Err(lost(agent, e)),
    }
}

/// Sends a query and waits for its schema.
pub async fn start(agent: &Arc<AgentHandle>, request: pb::Request) -> Result<Running, Status> {
    let inflight = InflightGuard::new(agent.clone());
    let realtime = matches!(&request.kind, Some(pb::request::Kind::Query(q)) if q.mode != pb::Mode::Reload as i32);
    let priority = if realtime {
        PRIORITY_REALTIME
    } else {
        PRIORITY_RELOAD
    };
    let (mut reader, send) = open(agent, &request, priority).await?;
    match first_frame(agent, &request.source, &mut reader).await? {
        pb::response_frame::Frame::Schema(s) => {
            let schema = ipc::decode_schema(&s.ipc_header)
                .map_err(|e| Status::internal(format!("agent sent a bad schema: {e}")))?;
            Ok(Running {
                schema,
                source: request.source.clone(),
                schema_header: s.ipc_header,
                reader,
                _send: send,
                _inflight: inflight,
                finished: false,
                audit: None,
            })
        }
        _ => Err(Status::internal("agent answered a query without a schema")),
    }
}

/// Asks the agent to prepare a statement and report its schemas.
pub async fn describe(
    agent: &Arc<AgentHandle>,
    request: pb::Request,
) -> Result<pb::DescribeResult, Status> {
    let _inflight = InflightGuard::new(agent.clone());
    let (mut reader, _send) = open(agent, &request, PRIORITY_REALTIME).await?;
    match first_frame(agent, &request.source, &mut reader).await? {
        pb::response_frame::Frame::Described(d) => Ok(d),
        _ => Err(Status::internal(
            "agent answered describe with something else",
        )),
    }
}

/// Lists a source's tables (a small result, collected in memory).
pub async fn list_tables(
    agent: &Arc<AgentHandle>,
    request: pb::Request,
) -> Result<Vec<catalog::TableInfo>, Status> {
    let mut running = start(agent, request).await?;
    let mut tables = Vec::new();
    while let Some(data) = running.next_data().await? {
        let batches = arrow_flight::utils::flight_data_to_arrow_batch(
            &data,
            running.schema.clone(),
            &Default::default(),
        )
        .map_err(|e| Status::internal(format!("bad table listing: {e}")))?;
        tables.extend(catalog::from_batch(&batches).map_err(|e| Status::internal(e.to_string()))?);
    }
    Ok(tables)
}

impl Running {
    /// The next batch as Flight data, or `None` at the end.
    pub async fn next_data(&mut self) -> Result<Option<FlightData>, Status> {
        let was_finished = self.finished;
        let next = self.next_frame().await;
        if let Some(a) = self.audit.as_mut() {
            match &next {
                Ok(Some(_)) => {}
                Ok(None) if !was_finished => a.done(),
                Ok(None) => {}
                Err(status) => a.failed(status),
            }
        }
        next
    }

    async fn next_frame(&mut self) -> Result<Option<FlightData>, Status> {
        if self.finished {
            return Ok(None);
        }
        let frame = self.reader.next::<pb::ResponseFrame>().await;
        let agent_gone = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!(
                "the agent stopped sending mid-result ({e}); retry the query"
            ))
        };
        match frame {
            Ok(Some(pb::ResponseFrame {
                frame: Some(pb::response_frame::Frame::Batch(b)),
            })) => {
                let body = self
                    .reader
                    .body(b.body_len)
                    .await
                    .map_err(|e| agent_gone(&e))?;
                if let Some(a) = self.audit.as_mut() {
                    a.batch(b.rows, b.body_len);
                }
                Ok(Some(
                    FlightData::new()
                        .with_data_header(b.ipc_header)
                        .with_data_body(body),
                ))
            }
            Ok(Some(pb::ResponseFrame {
                frame: Some(pb::response_frame::Frame::End(_)),
            })) => {
                self.finished = true;
                Ok(None)
            }
            Ok(Some(pb::ResponseFrame {
                frame: Some(pb::response_frame::Frame::Error(e)),
            })) => {
                self.finished = true;
                Err(error_status(&self.source, &e))
            }
            Ok(Some(_)) => Err(Status::internal(
                "agent sent an unexpected frame mid-result",
            )),
            Ok(None) => Err(agent_gone(&"stream ended without an end frame")),
            Err(e) => Err(agent_gone(&e)),
        }
    }

    /// The whole result as a Flight `DoGet` stream: schema first, then batches.
    pub fn into_stream(self) -> impl Stream<Item = Result<FlightData, Status>> + Send + 'static {
        let schema = FlightData::new().with_data_header(self.schema_header.clone());
        let first = futures::stream::once(async move { Ok(schema) });
        let rest = futures::stream::try_unfold(self, |mut running| async move {
            Ok(running.next_data().await?.map(|d| (d, running)))
        });
        futures::StreamExt::chain(first, rest)
    }
}
