//! The frame guard between a peer and fe2o3's connection engine (why: `amqp/mod.rs`).
//!
//! Two loops joined: **inbound** reads the peer, checks each frame header — size within 8..=max-frame-size,
//! data offset ≥ 2 and inside the frame, type 0 (AMQP) — and forwards only whole, well-formed frames;
//! it closes a connection whose frame takes longer than the frame deadline once started (a peer that drips
//! bytes) or that stays silent past the idle deadline. **Outbound** copies the engine's bytes to the peer
//! under a write deadline and keeps track of frame boundaries, so that when inbound finds a violation it can
//! put a `close` with the AMQP error on the wire between two frames (preceded by the protocol header and an
//! `open` if the engine has not sent them yet, AMQP 1.0 §2.4.1) before the connection ends.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use fe2o3_amqp::types::definitions::{AmqpError, ConnectionError, Error as AmqpErrorBody, ErrorCondition};
use fe2o3_amqp::types::performatives::{Close, Open};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::connection::End;
use super::Limits;

/// A violation found by inbound: the condition and description of the `close` that ends the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub condition: ErrorCondition,
    pub description: String,
}

impl Violation {
    fn framing(description: impl Into<String>) -> Self {
        Self { condition: ErrorCondition::ConnectionError(ConnectionError::FramingError), description: description.into() }
    }
}

/// Cuts whole frames off the front of `buf`, checking each header; `Ok(None)` until a frame is complete.
pub fn next_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<BytesMut>, Violation> {
    let Some(size) = buf.get(0..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes) else {
        return Ok(None);
    };
    let size = size as usize;
    if size < 8 {
        return Err(Violation::framing(format!("a frame of {size} bytes is shorter than a frame header")));
    }
    if size > max_frame {
        return Err(Violation::framing(format!("a frame of {size} bytes exceeds max-frame-size {max_frame}")));
    }
    if let (Some(&doff), Some(&kind)) = (buf.get(4), buf.get(5)) {
        if doff < 2 || usize::from(doff) * 4 > size {
            return Err(Violation::framing(format!("data offset {doff} does not fit a frame of {size} bytes")));
        }
        if kind != 0 {
            return Err(Violation::framing(format!("frame type {kind} is not AMQP (0) after the SASL layer")));
        }
    }
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some(buf.split_to(size)))
}

/// Where the engine's output stands: inside the protocol header, a frame, or between frames.
#[derive(Debug, Default)]
struct Boundary {
    header_seen: usize,
    size_bytes: [u8; 4],
    size_seen: usize,
    frame_left: usize,
    frames: u64,
}

impl Boundary {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.header_seen < 8 {
                let n = (8 - self.header_seen).min(bytes.len());
                self.header_seen += n;
                bytes.advance(n);
            } else if self.frame_left > 0 {
                let n = self.frame_left.min(bytes.len());
                self.frame_left -= n;
                bytes.advance(n);
                if self.frame_left == 0 {
                    self.frames += 1;
                }
            } else {
                self.size_bytes[self.size_seen] = bytes.get_u8();
                self.size_seen += 1;
                if self.size_seen == 4 {
                    self.size_seen = 0;
                    self.frame_left = (u32::from_be_bytes(self.size_bytes) as usize).saturating_sub(4);
                    if self.frame_left == 0 {
                        self.frames += 1;
                    }
                }
            }
        }
    }

    fn between_frames(&self) -> bool {
        self.frame_left == 0 && self.size_seen == 0 && (self.header_seen == 0 || self.header_seen == 8)
    }
}

fn frame(performative: &impl serde::Serialize) -> Option<Vec<u8>> {
    let body = serde_amqp::to_vec(performative).ok()?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.put_u32(u32::try_from(body.len() + 8).ok()?);
    out.extend_from_slice(&[2, 0, 0, 0]);
    out.extend_from_slice(&body);
    Some(out)
}

/// An `open` with nothing but a container id (every other field at its default).
pub fn bare_open(container_id: &str) -> Open {
    Open {
        container_id: container_id.into(),
        hostname: None,
        max_frame_size: Default::default(),
        channel_max: Default::default(),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// The bytes that end a connection on a violation, given what the engine already sent.
fn closing_bytes(sent: &Boundary, v: Violation) -> Vec<u8> {
    let mut out = Vec::new();
    if sent.header_seen == 0 {
        out.extend_from_slice(&super::header::AMQP);
    }
    if sent.frames == 0 {
        out.extend(frame(&bare_open("dps-console")).unwrap_or_default());
    }
    let close = Close { error: Some(AmqpErrorBody { condition: v.condition, description: Some(v.description), info: None }) };
    out.extend(frame(&close).unwrap_or_default());
    out
}

/// Pumps bytes between `peer` and `engine` until either ends or a limit trips. `prelude` (the client's
/// protocol header, already read) goes to the engine first.
pub async fn pump<P, E>(peer: P, engine: E, prelude: &[u8], limits: Limits, shutdown: watch::Receiver<bool>) -> Result<(), End>
where
    P: AsyncRead + AsyncWrite + Unpin,
    E: AsyncRead + AsyncWrite + Unpin,
{
    let (peer_rd, peer_wr) = tokio::io::split(peer);
    let (engine_rd, mut engine_wr) = tokio::io::split(engine);
    engine_wr.write_all(prelude).await.map_err(End::Io)?;
    let (violations, found) = mpsc::channel(1);
    let inbound = inbound(peer_rd, engine_wr, limits, shutdown, violations);
    let outbound = outbound(engine_rd, peer_wr, limits.write_timeout, found);
    tokio::select! {
        end = inbound => end,
        end = outbound => end,
    }
}

async fn inbound<R, W>(
    mut peer: R,
    mut engine: W,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    violations: mpsc::Sender<Violation>,
) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_frame = limits.max_frame_bytes as usize;
    let mut buf = BytesMut::new();
    let mut last_frame = Instant::now();
    let mut frame_started: Option<Instant> = None;
    let violation = loop {
        let deadline = match frame_started {
            Some(t) => t + limits.frame_timeout,
            None => last_frame + limits.idle_timeout,
        };
        buf.reserve(4096.min(max_frame));
        tokio::select! {
            read = peer.read_buf(&mut buf) => match read {
                Ok(0) => return Err(if buf.is_empty() { End::Closed } else { End::Protocol("connection closed inside a frame".into()) }),
                Ok(_) => {}
                Err(e) => return Err(End::Io(e)),
            },
            _ = tokio::time::sleep_until(deadline) => break timeout_violation(frame_started.is_some(), limits),
            _ = shutdown.changed() => break Violation {
                condition: ErrorCondition::ConnectionError(ConnectionError::ConnectionForced),
                description: "the service is stopping".into(),
            },
        }
        let mut broken = None;
        loop {
            match next_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    engine.write_all(&frame).await.map_err(End::Io)?;
                    last_frame = Instant::now();
                }
                Ok(None) => break,
                Err(v) => {
                    broken = Some(v);
                    break;
                }
            }
        }
        if let Some(v) = broken {
            break v;
        }
        frame_started = match (buf.is_empty(), frame_started) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            (false, None) => Some(Instant::now()),
        };
        if buf.is_empty() {
            buf = BytesMut::new(); // an idle connection keeps no buffer
        }
    };
    let _ = violations.send(violation).await;
    std::future::pending().await
}

fn timeout_violation(mid_frame: bool, limits: Limits) -> Violation {
    let description = if mid_frame {
        format!("a frame did not arrive within {} s", limits.frame_timeout.as_secs())
    } else {
        format!("no frame within the idle time-out of {} s", limits.idle_timeout.as_secs())
    };
    Violation { condition: ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded), description }
}

async fn outbound<R, W>(mut engine: R, mut peer: W, write_timeout: Duration, mut found: mpsc::Receiver<Violation>) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = Boundary::default();
    let mut buf = BytesMut::new();
    let mut pending: Option<Violation> = None;
    loop {
        if let Some(v) = pending.take_if(|_| sent.between_frames()) {
            let bytes = closing_bytes(&sent, v.clone());
            let _ = tokio::time::timeout(write_timeout, async {
                peer.write_all(&bytes).await?;
                peer.shutdown().await
            })
            .await;
            return Err(End::Violation(v.description));
        }
        buf.reserve(4096);
        tokio::select! {
            read = engine.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = tokio::time::timeout(write_timeout, peer.shutdown()).await;
                    return Ok(());
                }
                Ok(_) => {}
            },
            v = found.recv(), if pending.is_none() => match v {
                Some(v) => {
                    pending = Some(v);
                    continue;
                }
                None => return Ok(()),
            },
        }
        // Write what is here, but stop at a frame boundary when a close is waiting.
        sent.advance(&buf);
        match tokio::time::timeout(write_timeout, peer.write_all(&buf)).await {
            Ok(Ok(())) => buf.clear(),
            Ok(Err(e)) => return Err(End::Io(e)),
            Err(_) => return Err(End::Timeout("the peer stopped reading")),
        }
        if buf.capacity() > 64 * 1024 {
            buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whole_and_bad_headers_refused() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 12, 2, 0, 0][..]);
        assert_eq!(next_frame(&mut buf, 512).expect("ok").map(|f| f.len()), Some(8));
        assert_eq!(next_frame(&mut buf, 512), Ok(None), "the second frame is incomplete");
        for bad in [&[0u8, 0, 0, 4][..], &[0, 0, 0, 7, 2, 0], &[0, 0, 2, 1], &[0, 0, 0, 8, 1, 0], &[0, 0, 0, 8, 3, 0], &[0, 0, 0, 8, 2, 1]]
        {
            let mut b = BytesMut::from(bad);
            assert!(next_frame(&mut b, 512).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_boundary_follows_header_and_frames_across_chunks() {
        let mut b = Boundary::default();
        assert!(b.between_frames());
        b.advance(b"AMQP\0\x01");
        assert!(!b.between_frames());
        b.advance(b"\0\0\0\0\0\x0a\x02\x00");
        assert!(!b.between_frames());
        b.advance(b"\0\0\0\0");
        assert!(b.between_frames());
        assert_eq!(b.frames, 1);
        b.advance(&[0, 0, 0, 8, 2, 0, 0, 0]);
        assert_eq!(b.frames, 2);
    }

    #[test]
    fn a_violation_before_open_sends_header_open_and_close() {
        let bytes = closing_bytes(&Boundary::default(), Violation::framing("bad"));
        assert_eq!(bytes.get(0..8), Some(&super::super::header::AMQP[..]));
        let mut rest = BytesMut::from(bytes.get(8..).unwrap_or_default());
        let open = next_frame(&mut rest, 4096).expect("valid").expect("open");
        let close = next_frame(&mut rest, 4096).expect("valid").expect("close");
        assert!(open.len() > 8 && close.len() > 8 && rest.is_empty());
    }
}
