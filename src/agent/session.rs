//! One tunnel session: hello, heartbeats, and a task per query stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use super::audit::Audit;
use super::{AgentError, Served, Sources, query};
use crate::protocol::{FrameReader, FrameWriter, PROTOCOL_VERSION, pb};
use crate::transport::{CODE_SHUTDOWN, Connection, PRIORITY_CONTROL};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the agent checks whether its certificate is due for renewal.
const RENEW_CHECK: Duration = Duration::from_secs(3600);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Hello capability that marks a second connection as the realtime lane.
pub const LANE_REALTIME: &str = "lane.realtime";

fn hello(sources: &Sources, lane: bool) -> pb::AgentControl {
    let mut infos: Vec<pb::SourceInfo> = sources.values().map(|s| s.info()).collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    pb::AgentControl {
        msg: Some(pb::agent_control::Msg::Hello(pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            hostname: std::env::var("HOSTNAME").unwrap_or_default(),
            sources: infos,
            capabilities: if lane {
                vec![LANE_REALTIME.into()]
            } else {
                vec!["compression.lz4".into(), "compression.zstd".into()]
            },
        })),
    }
}

/// Runs until the connection drops (`Err`) or `shutdown` fires and running
/// queries have drained (`Ok`).
pub async fn run(
    conn: &Connection,
    served: &Served,
    shutdown: &CancellationToken,
    drain: Duration,
    bulk: &tokio::runtime::Handle,
    lane: bool,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), AgentError> {
    let (send, recv) = conn.open_bi().await?;
    send.set_priority(PRIORITY_CONTROL);
    let mut writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv, 0);
    writer.send(&hello(&served.sources, lane)).await?;
    let ack: pb::HubControl = tokio::time::timeout(HELLO_TIMEOUT, reader.expect("hello ack"))
        .await
        .map_err(|_| AgentError::HelloTimeout(HELLO_TIMEOUT))??;
    let ack = match ack.msg {
        Some(pb::hub_control::Msg::HelloAck(a)) => a,
        Some(pb::hub_control::Msg::Error(e)) => return Err(AgentError::Refused(e.message)),
        _ => return Err(AgentError::Refused("unexpected answer to hello".into())),
    };
    let span = tracing::info_span!("tunnel", agent = %ack.agent_id, tenant = %ack.tenant);
    let audit = Audit::new(served.audit.clone(), &ack.agent_id, &ack.tenant);
    info!(parent: &span, hub = %conn.remote_address(), sources = served.sources.len(), lane, "connected to the hub");
    if let Some(ready) = ready {
        let _ = ready.send(());
    }

    let tracker = TaskTracker::new();
    let queries = CancellationToken::new();
    let active = Arc::new(AtomicU32::new(0));
    let mut heartbeat = tokio::time::interval(Duration::from_millis(u64::from(
        ack.heartbeat_interval_ms.max(1000),
    )));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // The key of a certificate renewal in flight (primary tunnel only).
    let pending: std::sync::Mutex<Option<rcgen::KeyPair>> = Default::default();
    let mut renew_check = tokio::time::interval(RENEW_CHECK);
    renew_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // Reading the control stream lives in one future for the whole session,
    // so no half-read frame is ever dropped by the select below.
    let control = async {
        loop {
            match reader.next::<pb::HubControl>().await {
                Ok(Some(pb::HubControl {
                    msg: Some(pb::hub_control::Msg::Error(e)),
                })) => {
                    warn!(parent: &span, message = %e.message, "hub reported an error");
                }
                Ok(Some(pb::HubControl {
                    msg: Some(pb::hub_control::Msg::Renewed(r)),
                })) => {
                    let key = pending.lock().expect("renewal lock").take();
                    match key
                        .map(|k| super::renew::install(&served.identity, &k, &r.certificate_pem))
                    {
                        Some(Ok(())) => {
                            info!(parent: &span, not_after_ms = r.not_after_ms, "certificate renewed; used from the next connection")
                        }
                        Some(Err(e)) => {
                            warn!(parent: &span, error = %e, "could not store the renewed certificate; keeping the old one")
                        }
                        None => {
                            warn!(parent: &span, "the hub sent a certificate nobody asked for; ignored")
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    tokio::pin!(control);

    let outcome = loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let (sources, audit, active, cancel, bulk) = (served.sources.clone(), audit.clone(), active.clone(), queries.child_token(), bulk.clone());
                    tracker.spawn(
                        async move {
                            active.fetch_add(1, Ordering::Relaxed);
                            query::serve(send, recv, &sources, &audit, cancel, &bulk).await;
                            active.fetch_sub(1, Ordering::Relaxed);
                        }
                        .instrument(span.clone()),
                    );
                }
                Err(e) => break Err(AgentError::from(e)),
            },
            _ = renew_check.tick(), if !lane => {
                if pending.lock().expect("renewal lock").is_none() && super::renew::due(&served.identity) {
                    match super::renew::request() {
                        Ok((key, request)) => {
                            info!(parent: &span, "asking the hub to renew this agent's certificate");
                            if let Err(e) = writer.send(&request).await {
                                break Err(e.into());
                            }
                            *pending.lock().expect("renewal lock") = Some(key);
                        }
                        Err(e) => warn!(parent: &span, error = %e, "cannot make a key for renewal"),
                    }
                }
            }
            _ = heartbeat.tick() => {
                let hb = pb::AgentControl { msg: Some(pb::agent_control::Msg::Heartbeat(pb::Heartbeat {
                    sent_unix_ms: unix_ms(),
                    active_queries: active.load(Ordering::Relaxed),
                }))};
                if let Err(e) = writer.send(&hb).await {
                    break Err(e.into());
                }
            }
            r = &mut control => {
                break match r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.into()),
                };
            }
            _ = shutdown.cancelled() => {
                let d = pb::AgentControl { msg: Some(pb::agent_control::Msg::Draining(pb::Draining {
                    reason: "agent shutting down".into(),
                }))};
                let _ = writer.send(&d).await;
                break Ok(());
            }
        }
    };

    tracker.close();
    if outcome.is_err() {
        // Nobody can receive the results any more: stop the databases' work.
        queries.cancel();
    } else if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(parent: &span, running = tracker.len(), "drain timeout: cancelling running queries");
        queries.cancel();
    }
    tracker.wait().await;
    debug!(parent: &span, "all query tasks finished");
    if outcome.is_ok() {
        conn.close(CODE_SHUTDOWN, "agent shutting down");
    }
    outcome
}
