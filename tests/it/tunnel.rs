//! The tunnel under stress: reconnects, refused agents, hostile peers.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use gatehouse::protocol::{FrameReader, FrameWriter, PROTOCOL_VERSION, pb};
use gatehouse::transport::{Connection, quic, tls};
use tokio::io::AsyncWriteExt;

use crate::harness::{Fixture, demo, query, sqlite, start_reload, tpch_db};

async fn count_nations(fx: &Fixture) -> i64 {
    let mut c = fx.client("alice").await;
    let b = query(&mut c, "SELECT count(*) FROM nation").await.unwrap();
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn agent_reconnects_after_the_hub_restarts() {
    let mut fx = demo().await;
    assert_eq!(count_nations(&fx).await, 25);
    let ports = (fx.flight, fx.tunnel);
    fx.hub.take().unwrap().stop().await;
    fx.start_hub(Some(ports)).await;
    fx.wait_agents(1).await;
    assert_eq!(count_nations(&fx).await, 25);
    fx.stop().await;
}

/// A raw tunnel client presenting a certificate for `agent_id`.
async fn raw_agent(fx: &Fixture, agent_id: &str) -> Connection {
    let (cert, key) = fx.pki.issue_agent(agent_id).unwrap();
    let cfg = tls::client_config(&fx.pki.ca_cert(), &cert, &key).unwrap();
    let ep = quic::client_endpoint("127.0.0.1:0".parse().unwrap(), cfg, 8).unwrap();
    Connection::Quic(ep.connect(fx.tunnel, "localhost").unwrap().await.unwrap())
}

fn hello() -> pb::AgentControl {
    pb::AgentControl {
        msg: Some(pb::agent_control::Msg::Hello(pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "test".into(),
            hostname: "test".into(),
            sources: vec![pb::SourceInfo {
                name: "tpch".into(),
                kind: "sqlite".into(),
                ..Default::default()
            }],
            capabilities: vec![],
        })),
    }
}

#[tokio::test]
async fn hub_refuses_unknown_agents_and_survives_garbage() {
    let fx = demo().await;

    // A certificate from the right CA, but an agent id no tenant lists.
    let conn = raw_agent(&fx, "stranger").await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut w = FrameWriter::new(send);
    w.send(&hello()).await.unwrap();
    let mut r = FrameReader::new(recv, 0);
    let answer: pb::HubControl = r.expect("answer").await.unwrap();
    match answer.msg {
        Some(pb::hub_control::Msg::Error(e)) => assert!(
            e.message.contains("not assigned to a tenant"),
            "{}",
            e.message
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(fx.registry().count(), 1);

    // Garbage instead of a hello: an absurd length, then random bytes.
    for junk in [
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        let conn = raw_agent(&fx, "acme-1").await;
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&junk).await.unwrap();
        send.finish();
        let mut r = FrameReader::new(recv, 0);
        let answer = r.next::<pb::HubControl>().await;
        assert!(
            matches!(
                &answer,
                Ok(Some(pb::HubControl {
                    msg: Some(pb::hub_control::Msg::Error(_))
                }))
            ),
            "{answer:?}"
        );
    }
    // A hello from another protocol version.
    let conn = raw_agent(&fx, "acme-1").await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut w = FrameWriter::new(send);
    let mut h = hello();
    if let Some(pb::agent_control::Msg::Hello(h)) = &mut h.msg {
        h.protocol_version = 99;
    }
    w.send(&h).await.unwrap();
    let answer: pb::HubControl = FrameReader::new(recv, 0).expect("answer").await.unwrap();
    assert!(
        matches!(answer.msg, Some(pb::hub_control::Msg::Error(e)) if e.message.contains("upgrade the agent"))
    );

    // The real agent is still registered and serving.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count_nations(&fx).await, 25);
    fx.stop().await;
}

/// Sends raw bytes on a new query stream and returns the agent's frames.
async fn ask_raw(conn: &Connection, bytes: &[u8]) -> Vec<pb::ResponseFrame> {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish();
    let mut r = FrameReader::new(recv, 64 << 20);
    let mut frames = Vec::new();
    loop {
        match r.next::<pb::ResponseFrame>().await {
            Ok(Some(f)) => {
                if let Some(pb::response_frame::Frame::Batch(b)) = &f.frame {
                    r.body(b.body_len).await.unwrap();
                }
                frames.push(f);
            }
            Ok(None) | Err(_) => return frames,
        }
    }
}

fn encode(req: &pb::Request) -> Vec<u8> {
    use prost::Message;
    let body = req.encode_to_vec();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn error_code(frames: &[pb::ResponseFrame]) -> Option<pb::ErrorCode> {
    frames.iter().find_map(|f| match &f.frame {
        Some(pb::response_frame::Frame::Error(e)) => pb::ErrorCode::try_from(e.code).ok(),
        _ => None,
    })
}

#[tokio::test]
async fn agent_survives_a_hostile_hub() {
    // A fake hub with the real hub certificate: the agent trusts it and dials it.
    let fx = demo().await;
    let server_tls =
        tls::server_config(&fx.pki.hub_cert(), &fx.pki.hub_key(), &fx.pki.ca_cert()).unwrap();
    let ep = quic::server_endpoint("127.0.0.1:0".parse().unwrap(), server_tls, 4).unwrap();
    let mut fake = Fixture::builder().tenant("x", "x").start().await;
    fake.tunnel = ep.local_addr().unwrap();
    fake.pki = gatehouse::transport::tls::DevPki::open(&fx.pki.dir);
    fake.start_agent(
        "acme-1",
        BTreeMap::from([("tpch".to_string(), sqlite(tpch_db()))]),
    );

    let conn = Connection::Quic(ep.accept().await.unwrap().await.unwrap());
    let (send, recv) = conn.accept_bi().await.unwrap();
    let mut r = FrameReader::new(recv, 0);
    let _hello: pb::AgentControl = r.expect("hello").await.unwrap();
    let mut w = FrameWriter::new(send);
    w.send(&pb::HubControl {
        msg: Some(pb::hub_control::Msg::HelloAck(pb::HelloAck {
            agent_id: "acme-1".into(),
            tenant: "x".into(),
            heartbeat_interval_ms: 10_000,
        })),
    })
    .await
    .unwrap();

    // Garbage protobuf, absurd length, truncated frame.
    let garbage = ask_raw(&conn, &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(error_code(&garbage), Some(pb::ErrorCode::InvalidRequest));
    let huge = ask_raw(&conn, &[0x7f, 0xff, 0xff, 0xff, 0]).await;
    assert_eq!(error_code(&huge), Some(pb::ErrorCode::InvalidRequest));
    let cut = ask_raw(&conn, &[0, 0, 1, 0, 1, 2]).await;
    assert_eq!(error_code(&cut), Some(pb::ErrorCode::InvalidRequest));

    let query = |sql: &str, params: Bytes| pb::Request {
        query_id: "q".into(),
        source: "tpch".into(),
        kind: Some(pb::request::Kind::Query(pb::Query {
            sql: sql.into(),
            params_ipc: params,
            ..Default::default()
        })),
        user: "u".into(),
        groups: vec![],
        deadline_ms: 0,
    };
    let mut unknown = query("SELECT 1", Bytes::new());
    unknown.source = "nope".into();
    assert_eq!(
        error_code(&ask_raw(&conn, &encode(&unknown)).await),
        Some(pb::ErrorCode::UnknownSource)
    );
    let bad_params = query("SELECT ?", Bytes::from_static(b"not arrow"));
    assert_eq!(
        error_code(&ask_raw(&conn, &encode(&bad_params)).await),
        Some(pb::ErrorCode::InvalidRequest)
    );
    let no_kind = pb::Request {
        kind: None,
        ..query("", Bytes::new())
    };
    assert_eq!(
        error_code(&ask_raw(&conn, &encode(&no_kind)).await),
        Some(pb::ErrorCode::InvalidRequest)
    );

    // After all that, a proper query still streams schema, batch and end.
    let ok = ask_raw(
        &conn,
        &encode(&query("SELECT n_name FROM nation", Bytes::new())),
    )
    .await;
    assert!(matches!(
        ok.first().and_then(|f| f.frame.as_ref()),
        Some(pb::response_frame::Frame::Schema(_))
    ));
    let total: u64 = ok
        .iter()
        .filter_map(|f| match &f.frame {
            Some(pb::response_frame::Frame::Batch(b)) => Some(b.rows),
            _ => None,
        })
        .sum();
    assert_eq!(total, 25);
    assert!(
        matches!(ok.last().and_then(|f| f.frame.as_ref()), Some(pb::response_frame::Frame::End(e)) if e.rows == 25)
    );
    fake.stop().await;
    fx.stop().await;
}

#[tokio::test]
async fn agent_drains_running_queries_on_shutdown() {
    use futures::StreamExt;
    let mut fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent(
            "acme",
            "acme-1",
            vec![("pg", crate::harness::postgres(Default::default()))],
        )
        .start()
        .await;
    let mut c = fx.client("alice").await;
    let mut stream = start_reload(
        &mut c,
        "SELECT g, md5(g::text) AS h FROM generate_series(1, 300000) g",
    )
    .await;
    let mut seen = stream.next().await.unwrap().unwrap().num_rows();
    // SIGTERM equivalent: the agent stops taking queries but finishes this one.
    let agent = fx.agents.pop().unwrap();
    let stopping = tokio::spawn(agent.stop());
    while let Some(b) = stream.next().await {
        seen += b.unwrap().num_rows();
    }
    assert_eq!(seen, 300_000);
    stopping.await.unwrap();
    // Gone from the hub once drained: new queries say so clearly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert!(
        crate::harness::message(&e).contains("no agent of your tenant is connected"),
        "{e}"
    );
    fx.stop().await;
}

#[tokio::test]
async fn realtime_queries_use_the_lane_and_fall_back_without_it() {
    let fx = demo().await;
    let agent = fx.registry().find("acme", "acme-1").unwrap();
    for _ in 0..100 {
        if agent.lane.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lane = agent
        .lane
        .lock()
        .unwrap()
        .clone()
        .expect("the agent opened a realtime lane");
    let before = lane.stream_frames_sent();
    assert_eq!(count_nations(&fx).await, 25);
    assert!(
        lane.stream_frames_sent() > before,
        "the realtime query did not go over the lane"
    );

    // Without the lane, realtime queries go over the primary tunnel.
    agent.lane.lock().unwrap().take().unwrap().close(0, "test");
    assert_eq!(count_nations(&fx).await, 25);
    fx.stop().await;
}

/// Frame bytes: a 4-byte length and the message.
fn framed(msg: &impl prost::Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn response(frame: pb::response_frame::Frame) -> Vec<u8> {
    framed(&pb::ResponseFrame { frame: Some(frame) })
}

#[tokio::test]
async fn hub_survives_a_hostile_agent() {
    // The hostile agent holds a valid certificate for its own tenant.
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-1", vec![("tpch", sqlite(tpch_db()))])
        .tenant("evil", "mallory")
        .configure("evil", |t| t.agents.push("evil-1".into()))
        .start()
        .await;
    let conn = raw_agent(&fx, "evil-1").await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut w = FrameWriter::new(send);
    w.send(&hello()).await.unwrap();
    let ack: pb::HubControl = FrameReader::new(recv, 0).expect("ack").await.unwrap();
    assert!(matches!(ack.msg, Some(pb::hub_control::Msg::HelloAck(_))));
    fx.wait_agents(2).await;

    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "x",
        arrow::datatypes::DataType::Int64,
        true,
    )]);
    let header = gatehouse::protocol::ipc::IpcEncoder::new(pb::Compression::None)
        .unwrap()
        .schema(&schema);
    let good_schema = response(pb::response_frame::Frame::Schema(pb::SchemaFrame {
        ipc_header: header.into(),
    }));
    let batch = |body_len: u64| {
        response(pb::response_frame::Frame::Batch(pb::BatchFrame {
            ipc_header: Bytes::from_static(b"not an arrow header"),
            rows: 1,
            body_len,
        }))
    };
    let scenarios: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", vec![0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]),
        (
            "an absurd frame length",
            vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        ("a batch before the schema", batch(0)),
        (
            "a schema that is not Arrow",
            response(pb::response_frame::Frame::Schema(pb::SchemaFrame {
                ipc_header: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]),
            })),
        ),
        (
            "a 1 TiB body",
            [good_schema.clone(), batch(1 << 40)].concat(),
        ),
        (
            "a body cut short",
            [good_schema.clone(), batch(100), vec![0; 10]].concat(),
        ),
        ("a stream that just ends", good_schema.clone()),
    ];
    let answers = scenarios.clone();
    let server = tokio::spawn(async move {
        for (_, bytes) in answers {
            let (mut send, recv) = conn.accept_bi().await.unwrap();
            let _req: pb::Request = FrameReader::new(recv, 0).expect("request").await.unwrap();
            send.write_all(&bytes).await.unwrap();
            send.finish();
        }
        conn
    });

    let mut mallory = fx.client("mallory").await;
    for (what, _) in &scenarios {
        let r = tokio::time::timeout(Duration::from_secs(20), query(&mut mallory, "SELECT 1"))
            .await
            .unwrap_or_else(|_| panic!("{what}: the hub hung"));
        let e = r.expect_err(what);
        assert!(
            matches!(
                crate::harness::code(&e),
                tonic::Code::Unavailable | tonic::Code::Internal
            ),
            "{what}: {e}"
        );
    }
    let _conn = server.await.unwrap();
    // The hub still serves everyone else.
    assert_eq!(count_nations(&fx).await, 25);
    assert_eq!(fx.registry().count(), 2);
    fx.stop().await;
}

#[tokio::test]
async fn hub_refuses_a_certificate_from_another_ca() {
    // Another tenant's agent id, in a certificate the hub's CA never signed.
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-1", vec![("tpch", sqlite(tpch_db()))])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let foreign =
        gatehouse::transport::tls::DevPki::create(dir.path(), &["localhost".into()]).unwrap();
    let (cert, key) = foreign.issue_agent("acme-1").unwrap();
    let cfg = tls::client_config(&fx.pki.ca_cert(), &cert, &key).unwrap();
    let ep = quic::client_endpoint("127.0.0.1:0".parse().unwrap(), cfg, 8).unwrap();
    // TLS 1.3: the client may finish its handshake before the server has
    // checked the client's certificate, so the refusal can come later.
    let answer = async {
        let conn = Connection::Quic(ep.connect(fx.tunnel, "localhost").unwrap().await?);
        let (send, recv) = conn.open_bi().await?;
        FrameWriter::new(send).send(&hello()).await?;
        let answer: pb::HubControl = FrameReader::new(recv, 0).expect("answer").await?;
        Ok::<_, Box<dyn std::error::Error>>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("the hub neither answered nor closed the connection");
    assert!(answer.is_err(), "the hub answered: {answer:?}");
    assert_eq!(
        fx.registry().count(),
        1,
        "only the real acme-1 is registered"
    );
    assert_eq!(count_nations(&fx).await, 25);
    fx.stop().await;
}
