//! Bytes from a hostile peer, read the way the hub and the agent read them:
//! frames of every message type either side decodes, raw bodies, and the
//! Arrow IPC the agent decodes (bound parameters) and the hub's schema
//! frames. Nothing may panic, hang or allocate past the limits.
#![no_main]

use gatehouse::protocol::frame::FrameReader;
use gatehouse::protocol::{ipc, pb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    futures::executor::block_on(async {
        let mut r = FrameReader::new(rest, 64 << 10);
        match which % 4 {
            // The hub reading an agent's control stream.
            0 => while let Ok(Some(_)) = r.next::<pb::AgentControl>().await {},
            // The agent reading the hub's control stream.
            1 => while let Ok(Some(_)) = r.next::<pb::HubControl>().await {},
            // The agent reading a request; then the parameters it would decode.
            2 => {
                while let Ok(Some(req)) = r.next::<pb::Request>().await {
                    if let Some(pb::request::Kind::Query(q)) = req.kind {
                        if let Ok(batches) = ipc::read_stream(&q.params_ipc) {
                            let _ = gatehouse::connectors::params::from_batch(batches.first());
                        }
                    }
                }
            }
            // The hub reading a query's response frames and their bodies.
            _ => {
                while let Ok(Some(frame)) = r.next::<pb::ResponseFrame>().await {
                    match frame.frame {
                        Some(pb::response_frame::Frame::Batch(b)) => {
                            if r.body(b.body_len).await.is_err() {
                                break;
                            }
                        }
                        Some(pb::response_frame::Frame::Schema(s)) => {
                            let _ = ipc::decode_schema(&s.ipc_header);
                        }
                        _ => {}
                    }
                }
            }
        }
    });
});
