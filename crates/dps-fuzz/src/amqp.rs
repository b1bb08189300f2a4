//! AMQP (§3) after TLS: the input is the client's byte stream — protocol headers, SASL frames (PLAIN, the
//! TPM mechanism's control bytes), AMQP frames and performatives — fed to `amqp::run` over a duplex stream
//! that ends with the input. The connection must end (no hang) and the server write only protocol headers
//! and whole frames. The same bytes go through the frame guard's `next_frame` (each frame cut is exactly
//! the size its header declares, within max-frame-size, and nothing is lost) and through the SASL and link
//! address parsers of `dps_proto::amqp`.

use std::sync::Arc;

use bytes::BytesMut;
use dps_service::amqp::guard::next_frame;
use dps_service::amqp::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{harness, Harness, ANSWER_DEADLINE};

/// The frame guard's limit in this target: small, so that the input reaches it.
const MAX_FRAME: usize = 512;

async fn connection(h: &Harness, input: Vec<u8>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let transport = Transport { peer: std::net::SocketAddr::from(([127, 0, 0, 1], 40002)), client_chain: None, protocol: "amqp" };
    let task = tokio::spawn(dps_service::amqp::run(server, Arc::clone(&h.app), transport));
    let (mut rd, mut wr) = tokio::io::split(client);
    let write = async move {
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
        wr
    };
    let read = async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let done = tokio::time::timeout(ANSWER_DEADLINE, async { tokio::join!(write, read) }).await;
    task.abort();
    match done {
        Ok((_, out)) => out,
        Err(_) => panic!("the AMQP connection did not end within {ANSWER_DEADLINE:?} of its input's end"),
    }
}

/// The server's output is protocol headers and whole frames (AMQP 1.0 §2.2, §2.3).
fn check_output(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        if rest.starts_with(b"AMQP") {
            rest = rest.get(8..).unwrap_or_else(|| panic!("a cut protocol header: {out:?}"));
            continue;
        }
        let size = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes);
        let size = size.and_then(|s| usize::try_from(s).ok()).unwrap_or_else(|| panic!("a cut frame header: {out:?}"));
        assert!(size >= 8, "a frame of {size} bytes: {out:?}");
        rest = rest.get(size..).unwrap_or_else(|| panic!("a cut frame of {size} bytes: {out:?}"));
    }
}

/// `next_frame` cuts exactly the declared frames and loses nothing.
fn check_guard(data: &[u8]) {
    let data = data.strip_prefix(b"AMQP").and_then(|_| data.get(8..)).unwrap_or(data);
    let mut buf = BytesMut::from(data);
    let mut cut = 0usize;
    while let Ok(Some(frame)) = next_frame(&mut buf, MAX_FRAME) {
        let declared = frame.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes);
        assert_eq!(declared.and_then(|d| usize::try_from(d).ok()), Some(frame.len()), "a frame cut at another size than declared");
        assert!((8..=MAX_FRAME).contains(&frame.len()), "a frame of {} bytes passed the guard", frame.len());
        cut += frame.len();
    }
    assert_eq!(cut + buf.len(), data.len(), "the guard lost bytes");
}

fn check_parsers(data: &[u8]) {
    let _ = dps_proto::amqp::parse_plain(data);
    let _ = dps_proto::amqp::parse_tpm_init(data);
    let _ = dps_proto::amqp::tpm_response_data(data);
    let _ = dps_proto::amqp::tpm_blob_challenges(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dps_proto::amqp::parse_address(text);
    }
}

/// The AMQP port's connection on a raw client stream.
pub fn amqp_frames(data: &[u8]) {
    check_guard(data);
    check_parsers(data);
    let h = harness();
    let out = h.runtime.block_on(connection(h, data.to_vec()));
    check_output(&out);
}
