//! Serving one query stream: policy checks, the connector, and the frames back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::audit::{Audit, Outcome};
use super::{Source, Sources};
use crate::connectors::priority::REALTIME_WINDOW;
use crate::connectors::{BatchPlan, BatchSink, ConnectorError, Output, QuerySpec};
use crate::protocol::ipc::IpcEncoder;
use crate::protocol::{FrameError, FrameReader, FrameWriter, catalog, pb};
use crate::transport::{PRIORITY_REALTIME, PRIORITY_RELOAD, RecvHalf, SendHalf};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a finished result may take to be acknowledged by the hub.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// A refusal or failure reported to the hub as an `ErrorFrame`.
#[derive(Debug)]
struct Failure {
    code: pb::ErrorCode,
    message: String,
    retryable: bool,
}

impl Failure {
    fn new(code: pb::ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retryable: false,
        }
    }

    fn frame(&self) -> pb::ResponseFrame {
        pb::ResponseFrame {
            frame: Some(pb::response_frame::Frame::Error(pb::ErrorFrame {
                code: self.code as i32,
                message: self.message.clone(),
                retryable: self.retryable,
            })),
        }
    }
}

impl From<ConnectorError> for Failure {
    fn from(e: ConnectorError) -> Self {
        Failure {
            code: e.code(),
            retryable: e.retryable(),
            message: e.to_string(),
        }
    }
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Self {
        Failure::new(pb::ErrorCode::Cancelled, format!("the hub went away: {e}"))
    }
}

/// Serves one query stream. Reload queries run on `bulk`, the agent's
/// separate runtime, so their decoding and encoding never hold up a
/// realtime query waiting for a worker thread.
pub async fn serve(
    send: SendHalf,
    recv: RecvHalf,
    sources: &Sources,
    audit: &Audit,
    cancel: CancellationToken,
    bulk: &tokio::runtime::Handle,
) {
    let mut reader = FrameReader::new(recv, 0);
    let mut writer = FrameWriter::new(send);
    let request = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        reader.expect::<pb::Request>("request"),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            warn!(error = %e, "malformed request from the hub");
            let _ = writer
                .send(
                    &Failure::new(
                        pb::ErrorCode::InvalidRequest,
                        format!("malformed request: {e}"),
                    )
                    .frame(),
                )
                .await;
            writer.get_mut().finish();
            return;
        }
        Err(_) => {
            writer.get_mut().reset(crate::transport::CODE_CANCELLED);
            return;
        }
    };
    let reload = is_reload(&request);
    let work = respond(request, writer, sources.clone(), audit.clone(), cancel);
    if reload {
        if let Err(e) = bulk.spawn(work).await {
            warn!(error = %e, "reload task failed");
        }
    } else {
        work.await;
    }
}

fn is_reload(request: &pb::Request) -> bool {
    matches!(&request.kind, Some(pb::request::Kind::Query(q)) if q.mode == pb::Mode::Reload as i32)
}

/// Rows and bytes sent so far, for the audit record whatever the outcome.
#[derive(Default)]
struct Progress {
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

async fn respond(
    request: pb::Request,
    mut writer: FrameWriter<SendHalf>,
    sources: Sources,
    audit: Audit,
    cancel: CancellationToken,
) {
    let sources = &sources;
    let started = Instant::now();
    // A stopped stream (the client went away) cancels the query; the query
    // future itself is never dropped mid-way, so connectors always get to
    // cancel the statement in the database.
    let stopped = writer.get_mut().stopped();
    let cancelled_by_hub = cancel.clone();
    let watch = async move {
        stopped.await;
        cancelled_by_hub.cancel();
        std::future::pending::<()>().await
    };
    let progress = Progress::default();
    let outcome = tokio::select! {
        r = handle(&request, sources, &mut writer, &cancel, &progress) => r,
        _ = watch => unreachable!("the watcher never completes"),
    };
    audit.record(
        &request,
        &Outcome {
            rows: progress.rows.load(Ordering::Relaxed),
            bytes: progress.bytes.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            error: outcome.as_ref().err().map(|f| (f.code, f.message.as_str())),
        },
    );
    let query_id = &request.query_id;
    let source = &request.source;
    let user = &request.user;
    match outcome {
        Ok(()) => {
            let rows = progress.rows.load(Ordering::Relaxed);
            info!(%query_id, %source, %user, rows, elapsed_us = started.elapsed().as_micros() as u64, "query done");
            writer.get_mut().finish();
        }
        Err(f) if f.code == pb::ErrorCode::Cancelled => {
            info!(%query_id, %source, %user, reason = %f.message, "query cancelled");
            writer.get_mut().reset(crate::transport::CODE_CANCELLED);
        }
        Err(f) => {
            info!(%query_id, %source, %user, code = ?f.code, error = %f.message, "query failed");
            if writer.send(&f.frame()).await.is_ok() {
                writer.get_mut().finish();
            }
        }
    }
    // Stay (and keep the session open) until the hub has everything we sent:
    // closing the connection earlier, as a drain does, would discard it.
    let _ = tokio::time::timeout(DELIVERY_TIMEOUT, writer.get_mut().stopped()).await;
}

fn source<'a>(sources: &'a Sources, name: &str) -> Result<&'a Source, Failure> {
    sources.get(name).map(|s| s.as_ref()).ok_or_else(|| {
        let mut known: Vec<&str> = sources.keys().map(String::as_str).collect();
        known.sort();
        Failure::new(
            pb::ErrorCode::UnknownSource,
            format!(
                "this agent has no source {name:?}; it has: {}",
                known.join(", ")
            ),
        )
    })
}

async fn handle(
    request: &pb::Request,
    sources: &Sources,
    writer: &mut FrameWriter<SendHalf>,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(), Failure> {
    let src = source(sources, &request.source)?;
    // Everything but a reload is on a chart's path: reloads step aside, for
    // the query's first moments only, so a big export sent as "realtime"
    // cannot hold reloads back for long.
    let reload = is_reload(request);
    let guard = src
        .priority
        .as_ref()
        .filter(|_| !reload)
        .map(|p| p.realtime());
    let op = operate(request, src, writer, cancel, progress);
    tokio::pin!(op);
    if guard.is_some() {
        tokio::select! {
            r = &mut op => return r,
            _ = tokio::time::sleep(REALTIME_WINDOW) => drop(guard),
        }
    }
    op.await
}

async fn operate(
    request: &pb::Request,
    src: &Source,
    writer: &mut FrameWriter<SendHalf>,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(), Failure> {
    match &request.kind {
        Some(pb::request::Kind::Query(q)) => {
            run_query(request, q, src, writer, cancel, progress).await
        }
        Some(pb::request::Kind::Describe(d)) => {
            allowed(src, &d.sql)?;
            let described = src.connector.describe(&d.sql).await?;
            let mut enc = IpcEncoder::new(pb::Compression::None).map_err(ConnectorError::from)?;
            let frame = pb::ResponseFrame {
                frame: Some(pb::response_frame::Frame::Described(pb::DescribeResult {
                    dataset_schema: described
                        .schema
                        .map(|s| enc.schema(&s).into())
                        .unwrap_or_default(),
                    parameter_schema: described
                        .params
                        .map(|s| enc.schema(&s).into())
                        .unwrap_or_default(),
                })),
            };
            writer.send(&frame).await?;
            Ok(())
        }
        Some(pb::request::Kind::ListTables(l)) => {
            let mut tables = src.connector.list_tables(l.include_schema).await?;
            if let Some(allow) = &src.allow {
                tables.retain(|t| allow.lists(t));
            }
            let batch = catalog::to_batch(&tables).map_err(ConnectorError::from)?;
            let mut enc = IpcEncoder::new(pb::Compression::None).map_err(ConnectorError::from)?;
            send_schema(writer, &mut enc, &batch.schema()).await?;
            let bytes = send_batch(writer, &mut enc, &batch).await?;
            progress.add(batch.num_rows() as u64, bytes);
            send_end(
                writer,
                batch.num_rows() as u64,
                0,
                Duration::ZERO,
                Duration::ZERO,
            )
            .await?;
            Ok(())
        }
        None => Err(Failure::new(
            pb::ErrorCode::InvalidRequest,
            "request names no operation",
        )),
    }
}

/// The source's allow-list, if it has one, must admit `sql`.
fn allowed(src: &Source, sql: &str) -> Result<(), Failure> {
    match &src.allow {
        Some(allow) => allow.check(sql).map_err(|why| {
            Failure::new(
                pb::ErrorCode::NotAllowed,
                format!("source {:?}: {why}", src.name),
            )
        }),
        None => Ok(()),
    }
}

async fn send_schema(
    w: &mut FrameWriter<SendHalf>,
    enc: &mut IpcEncoder,
    schema: &arrow::datatypes::Schema,
) -> Result<(), FrameError> {
    let frame = pb::ResponseFrame {
        frame: Some(pb::response_frame::Frame::Schema(pb::SchemaFrame {
            ipc_header: enc.schema(schema).into(),
        })),
    };
    w.send(&frame).await
}

/// A batch bigger than this is sent in slices, so no Flight message exceeds
/// the 4 MiB gRPC default of common clients.
const MAX_MESSAGE_BYTES: usize = 3 << 20;

async fn send_batch(
    w: &mut FrameWriter<SendHalf>,
    enc: &mut IpcEncoder,
    batch: &arrow::array::RecordBatch,
) -> Result<u64, Failure> {
    let size = crate::connectors::batch_bytes(batch);
    if size > MAX_MESSAGE_BYTES && batch.num_rows() > 1 {
        let pieces = size.div_ceil(MAX_MESSAGE_BYTES / 2);
        let step = batch.num_rows().div_ceil(pieces).max(1);
        let mut sent = 0;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = step.min(batch.num_rows() - offset);
            sent += send_one(w, enc, &batch.slice(offset, len)).await?;
            offset += len;
        }
        return Ok(sent);
    }
    send_one(w, enc, batch).await
}

async fn send_one(
    w: &mut FrameWriter<SendHalf>,
    enc: &mut IpcEncoder,
    batch: &arrow::array::RecordBatch,
) -> Result<u64, Failure> {
    let (header, body) = enc.batch(batch).map_err(ConnectorError::from)?;
    let frame = pb::ResponseFrame {
        frame: Some(pb::response_frame::Frame::Batch(pb::BatchFrame {
            ipc_header: header.into(),
            rows: batch.num_rows() as u64,
            body_len: body.len() as u64,
        })),
    };
    w.send_with_body(&frame, &body).await?;
    Ok(body.len() as u64)
}

async fn send_end(
    w: &mut FrameWriter<SendHalf>,
    rows: u64,
    bytes: u64,
    first: Duration,
    total: Duration,
) -> Result<(), FrameError> {
    let frame = pb::ResponseFrame {
        frame: Some(pb::response_frame::Frame::End(pb::EndFrame {
            rows,
            bytes,
            first_batch_us: first.as_micros() as u64,
            total_us: total.as_micros() as u64,
        })),
    };
    w.send(&frame).await
}

async fn run_query(
    request: &pb::Request,
    q: &pb::Query,
    src: &Source,
    writer: &mut FrameWriter<SendHalf>,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mode = match pb::Mode::try_from(q.mode).unwrap_or(pb::Mode::Unspecified) {
        pb::Mode::Unspecified => pb::Mode::Realtime,
        m => m,
    };
    let limits = src.config.limits();
    if !limits.modes.iter().any(|m| pb::Mode::from(*m) == mode) {
        return Err(Failure::new(
            pb::ErrorCode::ModeNotAllowed,
            format!(
                "source {:?} does not allow {} queries (the agent's administrator decides this)",
                src.name,
                mode.as_str_name()
            ),
        ));
    }
    allowed(src, &q.sql)?;
    let compression = pb::Compression::try_from(q.compression).map_err(|_| {
        Failure::new(
            pb::ErrorCode::InvalidRequest,
            format!("unknown compression {}", q.compression),
        )
    })?;
    writer.get_mut().set_priority(if mode == pb::Mode::Reload {
        PRIORITY_RELOAD
    } else {
        PRIORITY_REALTIME
    });

    let queue = Duration::from_secs(limits.queue_timeout_secs);
    let _permit = tokio::time::timeout(queue, src.permits(mode).acquire())
        .await
        .map_err(|_| Failure {
            code: pb::ErrorCode::Busy,
            message: format!(
                "source {:?} is running its maximum of {} queries; waited {queue:?} for a slot",
                src.name,
                mode.as_str_name().to_lowercase()
            ),
            retryable: true,
        })?
        .map_err(|_| Failure::new(pb::ErrorCode::Unavailable, "agent is shutting down"))?;

    let params = if q.params_ipc.is_empty() {
        None
    } else {
        let mut batches = crate::protocol::ipc::read_stream(&q.params_ipc).map_err(|e| {
            Failure::new(
                pb::ErrorCode::InvalidRequest,
                format!("bad parameters: {e}"),
            )
        })?;
        if batches.len() != 1 {
            return Err(Failure::new(
                pb::ErrorCode::InvalidRequest,
                "parameters must be one record batch",
            ));
        }
        batches.pop()
    };
    let spec = QuerySpec {
        sql: q.sql.clone(),
        params,
        mode,
        batches: BatchPlan::for_mode(mode, q.batch_rows),
        yield_to: src.priority.clone().filter(|_| mode == pb::Mode::Reload),
    };
    let mut max_duration = Duration::from_secs(limits.max_duration_secs);
    if request.deadline_ms > 0 {
        max_duration = max_duration.min(Duration::from_millis(request.deadline_ms));
    }
    let max_rows = match (limits.max_rows, q.max_rows) {
        (0, n) | (n, 0) => n,
        (a, b) => a.min(b),
    };

    let (sink, mut rx) = BatchSink::channel();
    let db_cancel = cancel.child_token();
    let producer = async {
        let r = src.connector.execute(&spec, &sink, &db_cancel).await;
        drop(sink);
        r
    };
    let consumer = async {
        let mut enc = IpcEncoder::new(compression).map_err(ConnectorError::from)?;
        let (mut rows, mut bytes, mut data, mut first) = (0u64, 0u64, 0u64, None);
        let mut schema_sent = false;
        while let Some(out) = rx.recv().await {
            match out {
                Output::Schema(s) => {
                    send_schema(writer, &mut enc, &s).await?;
                    schema_sent = true;
                }
                Output::Batch(b) => {
                    if !schema_sent {
                        return Err(Failure::new(
                            pb::ErrorCode::Internal,
                            "connector sent a batch before the schema",
                        ));
                    }
                    rows += b.num_rows() as u64;
                    if max_rows > 0 && rows > max_rows {
                        return Err(Failure::new(
                            pb::ErrorCode::LimitExceeded,
                            format!(
                                "the result exceeds the {max_rows} rows source {:?} allows; filter or aggregate, or ask the agent's administrator to raise limits.max_rows",
                                src.name
                            ),
                        ));
                    }
                    // Measured only when limited: it walks every column's buffers.
                    if limits.max_bytes > 0 {
                        data += crate::connectors::batch_bytes(&b) as u64;
                    }
                    if limits.max_bytes > 0 && data > limits.max_bytes {
                        return Err(Failure::new(
                            pb::ErrorCode::LimitExceeded,
                            format!(
                                "the result exceeds the {} bytes source {:?} allows; select fewer columns or rows, or ask the agent's administrator to raise limits.max_bytes",
                                limits.max_bytes, src.name
                            ),
                        ));
                    }
                    let sent = send_batch(writer, &mut enc, &b).await?;
                    bytes += sent;
                    progress.add(b.num_rows() as u64, sent);
                    first.get_or_insert_with(|| started.elapsed());
                }
            }
        }
        Ok::<_, Failure>((rows, bytes, first.unwrap_or_default()))
    };
    let work = async {
        tokio::pin!(producer);
        tokio::pin!(consumer);
        // The consumer ends when the producer drops the sink; if the consumer
        // fails first (limit, hub gone) the producer is cancelled.
        let mut produced = None;
        loop {
            tokio::select! {
                r = &mut producer, if produced.is_none() => produced = Some(r),
                c = &mut consumer => {
                    match c {
                        Err(f) => {
                            db_cancel.cancel();
                            if produced.is_none() {
                                let _ = producer.await;
                            }
                            return Err(f);
                        }
                        Ok(stats) => {
                            let p = match produced { Some(p) => p, None => producer.await };
                            p?;
                            return Ok(stats);
                        }
                    }
                }
            }
        }
    };
    let outcome = {
        tokio::pin!(work);
        let deadline = tokio::time::sleep(max_duration);
        tokio::pin!(deadline);
        tokio::select! {
            r = &mut work => r,
            _ = &mut deadline => {
                db_cancel.cancel();
                let _ = work.await;
                Err(Failure::new(
                    pb::ErrorCode::Timeout,
                    format!("the query ran longer than {max_duration:?} (limits.max_duration_secs or the client's deadline)"),
                ))
            }
        }
    };
    let (rows, bytes, first) = outcome?;
    send_end(writer, rows, bytes, first, started.elapsed()).await?;
    Ok(())
}
