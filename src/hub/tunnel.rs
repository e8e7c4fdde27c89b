//! Accepting agent tunnels: identity from the client certificate, tenant from
//! the hub's configuration, then the control stream until the agent leaves.

use super::admission::Admission;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use super::registry::{AgentHandle, Registry};
use crate::agent::LANE_REALTIME;
use crate::protocol::{FrameReader, FrameWriter, PROTOCOL_VERSION, pb};
use crate::transport::{CODE_REFUSED, CODE_SHUTDOWN, Connection, tls};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

pub async fn serve(
    endpoint: quinn::Endpoint,
    registry: Arc<Registry>,
    admission: Arc<Admission>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.cancelled() => break,
        };
        let (registry, tenants, shutdown) = (registry.clone(), admission.clone(), shutdown.clone());
        let remote = incoming.remote_address();
        tracker.spawn(
            async move {
                let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                    Ok(Ok(c)) => Connection::Quic(c),
                    Ok(Err(e)) => return warn!(error = %e, "agent handshake failed (certificate not signed by the hub's CA?)"),
                    Err(_) => return warn!("agent handshake timed out"),
                };
                match agent_session(conn, &registry, &tenants, &shutdown).await {
                    Err(e) if !shutdown.is_cancelled() => warn!(error = %e, "agent session ended with an error"),
                    _ => {}
                }
            }
            .instrument(tracing::info_span!("agent", %remote)),
        );
    }
    endpoint.close(CODE_SHUTDOWN.into(), b"hub shutting down");
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error(transparent)]
    Frame(#[from] crate::protocol::FrameError),
    #[error("refused: {0}")]
    Refused(String),
}

async fn refuse(
    writer: &mut FrameWriter<crate::transport::SendHalf>,
    conn: &Connection,
    why: String,
) -> SessionError {
    let msg = pb::HubControl {
        msg: Some(pb::hub_control::Msg::Error(pb::HubError {
            message: why.clone(),
        })),
    };
    let _ = writer.send(&msg).await;
    writer.get_mut().finish();
    // Give the frame a moment to leave before closing the connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.close(CODE_REFUSED, &why);
    SessionError::Refused(why)
}

async fn agent_session(
    conn: Connection,
    registry: &Registry,
    admission: &Admission,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let (send, recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| SessionError::Refused("no control stream".into()))??;
    let mut writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv, 0);
    let hello = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        reader.expect::<pb::AgentControl>("hello"),
    )
    .await
    {
        Ok(Ok(pb::AgentControl {
            msg: Some(pb::agent_control::Msg::Hello(h)),
        })) => h,
        Ok(Err(e)) => return Err(refuse(&mut writer, &conn, format!("malformed hello: {e}")).await),
        _ => return Err(refuse(&mut writer, &conn, "expected a hello first".into()).await),
    };
    let agent_id = match conn.peer_certificates().as_deref().map(tls::agent_id) {
        Some(Ok(id)) => id,
        Some(Err(e)) => return Err(refuse(&mut writer, &conn, e.to_string()).await),
        None => return Err(refuse(&mut writer, &conn, "no client certificate".into()).await),
    };
    let tenant = match admission.tenant_of(&agent_id).await {
        Ok(t) => t,
        Err(why) => return Err(refuse(&mut writer, &conn, why).await),
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(refuse(
            &mut writer,
            &conn,
            format!("protocol version {} is not supported (the hub speaks {PROTOCOL_VERSION}); upgrade the agent", hello.protocol_version),
        )
        .await);
    }
    if hello.capabilities.iter().any(|c| c == LANE_REALTIME) {
        return lane_session(conn, writer, reader, registry, &tenant, &agent_id, shutdown).await;
    }
    let handle = Arc::new(AgentHandle {
        id: agent_id.clone(),
        tenant: tenant.clone(),
        conn: conn.clone(),
        sources: hello.sources,
        version: hello.agent_version,
        hostname: hello.hostname,
        connected_at: Instant::now(),
        draining: Default::default(),
        inflight: Default::default(),
        lane: Default::default(),
    });
    registry.register(handle.clone());
    admission.seen(&agent_id, &handle.version, conn.rtt()).await;
    writer.send(&hello_ack(&agent_id, &tenant)).await?;
    let sources: Vec<&str> = handle.sources.iter().map(|s| s.name.as_str()).collect();
    info!(agent = %agent_id, %tenant, version = %handle.version, host = %handle.hostname, sources = ?sources, "agent connected");

    let renewals = Renewals {
        admission,
        agent_id: &agent_id,
        version: &handle.version,
    };
    let (drained, result) = control_loop(
        &conn,
        &mut writer,
        &mut reader,
        shutdown,
        Some(&renewals),
        |reason| {
            info!(agent = %agent_id, %reason, "agent draining");
            handle.draining.store(true, Ordering::Relaxed);
        },
    )
    .await;
    registry.remove(&tenant, &agent_id, conn.id());
    info!(agent = %agent_id, %tenant, "agent disconnected");
    // A drained agent closing its connection is the normal end.
    if drained {
        return Ok(());
    }
    result
}

/// A second connection of an already connected agent, carrying realtime
/// queries apart from reloads. It lives until either side closes it.
async fn lane_session(
    conn: Connection,
    mut writer: FrameWriter<crate::transport::SendHalf>,
    mut reader: FrameReader<crate::transport::RecvHalf>,
    registry: &Registry,
    tenant: &str,
    agent_id: &str,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let Some(handle) = registry.find(tenant, agent_id) else {
        return Err(refuse(
            &mut writer,
            &conn,
            format!("agent {agent_id:?} has no primary tunnel to add a realtime lane to"),
        )
        .await);
    };
    *handle.lane.lock().expect("lane lock") = Some(conn.clone());
    writer.send(&hello_ack(agent_id, tenant)).await?;
    info!(agent = %agent_id, %tenant, "realtime lane connected");
    let (drained, result) =
        control_loop(&conn, &mut writer, &mut reader, shutdown, None, |_| {}).await;
    let mut lane = handle.lane.lock().expect("lane lock");
    if lane.as_ref().is_some_and(|l| l.id() == conn.id()) {
        *lane = None;
    }
    drop(lane);
    info!(agent = %agent_id, %tenant, "realtime lane closed");
    if drained { Ok(()) } else { result }
}

fn hello_ack(agent_id: &str, tenant: &str) -> pb::HubControl {
    pb::HubControl {
        msg: Some(pb::hub_control::Msg::HelloAck(pb::HelloAck {
            agent_id: agent_id.to_string(),
            tenant: tenant.to_string(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
        })),
    }
}

/// Answers heartbeats until the agent closes its control stream or the hub
/// shuts down (then it closes the connection). Returns whether the agent
/// announced a drain, and how the stream ended.
/// Certificate renewal and last-seen records for the agent on a primary tunnel.
struct Renewals<'a> {
    admission: &'a Admission,
    agent_id: &'a str,
    version: &'a str,
}

/// How often a connected agent's last-seen time and latency are stored.
const SEEN_EVERY: Duration = Duration::from_secs(60);

async fn control_loop(
    conn: &Connection,
    writer: &mut FrameWriter<crate::transport::SendHalf>,
    reader: &mut FrameReader<crate::transport::RecvHalf>,
    shutdown: &CancellationToken,
    renewals: Option<&Renewals<'_>>,
    mut on_drain: impl FnMut(&str),
) -> (bool, Result<(), SessionError>) {
    let mut drained = false;
    let mut last_seen = Instant::now();
    let result = loop {
        tokio::select! {
            frame = reader.next::<pb::AgentControl>() => match frame {
                Ok(Some(pb::AgentControl { msg: Some(pb::agent_control::Msg::Heartbeat(_)) })) => {
                    let hb = pb::HubControl { msg: Some(pb::hub_control::Msg::Heartbeat(pb::Heartbeat::default())) };
                    if let Err(e) = writer.send(&hb).await { break Err(e.into()); }
                    if let Some(rn) = renewals && last_seen.elapsed() >= SEEN_EVERY {
                        last_seen = Instant::now();
                        rn.admission.seen(rn.agent_id, rn.version, conn.rtt()).await;
                    }
                }
                Ok(Some(pb::AgentControl { msg: Some(pb::agent_control::Msg::Draining(d)) })) => {
                    drained = true;
                    on_drain(&d.reason);
                }
                Ok(Some(pb::AgentControl { msg: Some(pb::agent_control::Msg::Renew(r)) })) => {
                    let answer = match renewals {
                        Some(rn) => rn.admission.renew(rn.agent_id, &r.csr_pem).await,
                        None => Err("renew on the primary tunnel, not the realtime lane".into()),
                    };
                    let msg = match answer {
                        Ok((certificate_pem, not_after_ms)) => pb::hub_control::Msg::Renewed(pb::Renewed { certificate_pem, not_after_ms }),
                        Err(message) => pb::hub_control::Msg::Error(pb::HubError { message }),
                    };
                    if let Err(e) = writer.send(&pb::HubControl { msg: Some(msg) }).await { break Err(e.into()); }
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            },
            _ = shutdown.cancelled() => {
                conn.close(CODE_SHUTDOWN, "hub shutting down");
                break Ok(());
            }
        }
    };
    (drained, result)
}
