//! The HTTPS listener's request path after TLS: hyper, `https::handle` (WebSocket upgrade, path and query
//! splitting, the router, body limits, the service API's rights, the device and service handlers, the error
//! mapping) against the harness's service.
//!
//! `http_request`'s input is a request in a lenient text form, so seeds stay readable and mutations stay
//! requests: a flags byte, then `METHOD TARGET`, header lines `name: value`, an empty line and the body
//! (`\n` line ends). `{scope}` becomes the service's ID scope. The target builds a well-formed HTTP/1.1
//! request from it (bytes a URI cannot hold percent-encoded, framing headers its own) — what hyper itself
//! refuses is hyper's concern, what it accepts must be answered by ours. Flags: bit 0 the console port,
//! bit 1 the owner policy's SAS, bit 2 a device SAS of the group for the path's registration id.

use std::sync::Arc;

use dps_service::https::{handle, Peer, Surface};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{harness, Harness, ANSWER_DEADLINE};

/// Framing and connection headers the target writes itself.
const OWN_HEADERS: [&str; 6] = ["content-length", "transfer-encoding", "connection", "host", "upgrade", "authorization"];

/// A request as the input describes it.
struct Spec {
    flags: u8,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn spec(data: &[u8], scope: &str) -> Spec {
    let (flags, rest) = data.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
    let (head, body) = match find(rest, b"\n\n") {
        Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 2..).unwrap_or_default()),
        None => (rest, &[][..]),
    };
    let head = String::from_utf8_lossy(head).replace("{scope}", scope);
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let body = String::from_utf8(body.to_vec()).map(|b| b.replace("{scope}", scope).into_bytes()).unwrap_or_else(|e| e.into_bytes());
    Spec { flags, method: method.to_owned(), target: target.to_owned(), headers, body }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The target with every byte a request-target cannot carry percent-encoded; always starting with `/`.
fn uri_target(raw: &str) -> String {
    let mut out = String::from(if raw.starts_with('/') { "" } else { "/" });
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/?&=%:@!$'()*+,;".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The registration id a device path names (`/{scope}/registrations/{id}/…`).
fn path_registration_id(target: &str) -> Option<String> {
    let path = target.split('?').next()?;
    let mut segs = path.split('/').filter(|s| !s.is_empty()).skip_while(|s| !s.eq_ignore_ascii_case("registrations"));
    segs.next()?;
    Some(percent_decode_str(segs.next()?).decode_utf8_lossy().into_owned())
}

fn render(spec: &Spec, h: &Harness) -> Vec<u8> {
    let method = if !spec.method.is_empty() && spec.method.bytes().all(is_tchar) { spec.method.as_str() } else { "GET" };
    let target = uri_target(&spec.target);
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n", spec.body.len());
    if spec.flags & 2 != 0 {
        head.push_str(&format!("authorization: {}\r\n", h.service_sas()));
    } else if spec.flags & 4 != 0 {
        let id = path_registration_id(&target).unwrap_or_default();
        head.push_str(&format!("authorization: {}\r\n", h.device_sas(&id)));
    }
    for (k, v) in &spec.headers {
        let own = OWN_HEADERS.iter().any(|o| k.eq_ignore_ascii_case(o));
        let value_ok = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
        if !own && !k.is_empty() && k.bytes().all(is_tchar) && value_ok {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    [head.into_bytes(), spec.body.clone()].concat()
}

/// Runs `input` through one connection to [`handle`] and returns everything the server wrote, up to the end
/// of the first answer (its `content-length`, a server-sent-event stream's head) or the connection's close.
/// `end_input`: the client ends its stream after the input (a WebSocket session ends with it; an HTTP/1
/// request keeps it open, as hyper answers nothing on a half-closed connection).
pub(crate) async fn exchange(h: &Harness, surface: Surface, input: Vec<u8>, end_input: bool) -> Vec<u8> {
    exchange_with(h, surface, input, end_input, None).await
}

/// [`exchange`] of an HTTP/1 request from a client that presented `client_chain` in its TLS handshake.
pub(crate) async fn exchange_as(h: &Harness, surface: Surface, input: Vec<u8>, client_chain: Option<Arc<Vec<Vec<u8>>>>) -> Vec<u8> {
    exchange_with(h, surface, input, false, client_chain).await
}

async fn exchange_with(h: &Harness, surface: Surface, input: Vec<u8>, end_input: bool, client_chain: Option<Arc<Vec<Vec<u8>>>>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let app = Arc::clone(&h.app);
    let peer = Peer { addr: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)), client_chain, deadlines: None };
    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&app), surface, peer.clone(), req));
    let conn = tokio::spawn(async move {
        let _ = auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(server), svc).await;
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    // The client ends its stream only once the answer's head arrived (or the server closed): hyper drops a
    // connection whose client half-closes before the upgrade is answered (corpus/websocket/crash-empty-input).
    let (head_seen, on_head) = tokio::sync::oneshot::channel::<()>();
    let write = async move {
        let _ = wr.write_all(&input).await;
        if end_input {
            let _ = on_head.await;
            let _ = wr.shutdown().await;
        }
        wr
    };
    let read = async move {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let mut head_seen = Some(head_seen);
        while !answer_complete(&answer) {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
            if find(&answer, b"\r\n\r\n").is_some() {
                head_seen.take().map(|s| s.send(()));
            }
        }
        answer
    };
    let deadline = tokio::time::timeout(ANSWER_DEADLINE, async { tokio::join!(write, read) }).await;
    conn.abort();
    match deadline {
        Ok((_writer, answer)) => answer,
        Err(_) => panic!("no answer within {ANSWER_DEADLINE:?}"),
    }
}

/// Whether `answer` holds a whole response (by its `content-length`) or the head of an endless one.
fn answer_complete(answer: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = resp.parse(answer) else { return false };
    if resp.code == Some(101) {
        return false;
    }
    if header(&resp, "content-type").is_some_and(|v| v.starts_with("text/event-stream")) {
        return true;
    }
    header(&resp, "content-length").and_then(|v| v.parse::<usize>().ok()).is_some_and(|len| answer.len() >= n.saturating_add(len))
}

fn header<'a>(resp: &httparse::Response<'_, 'a>, name: &str) -> Option<&'a str> {
    resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok())
}

/// A TPM device's first register is answered 401 with the challenge (§1.10), not an error.
fn is_tpm_challenge(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("authenticationKey").is_some_and(serde_json::Value::is_string))
}

/// What every answer must be: HTTP, never a 500, and an error carries its DPS code (`x-ms-error-code`, the
/// body's `errorCode`) whose first three digits are the status (§1.8). Hyper's own refusals have no body; a
/// TPM challenge is a 401 with the `authenticationKey`.
pub(crate) fn check_answer(answer: &[u8]) -> u16 {
    let text = || String::from_utf8_lossy(answer).into_owned();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = resp.parse(answer) else { panic!("not an HTTP answer: {:?}", text()) };
    let status = resp.code.unwrap_or_default();
    if std::env::var_os("DPS_FUZZ_VERBOSE").is_some() {
        eprintln!("{}", text());
    }
    assert_ne!(status, 500, "an internal error: {}", text());
    let code = header(&resp, "x-ms-error-code").and_then(|c| c.parse::<i64>().ok());
    let body = answer.get(n..).unwrap_or_default();
    match code {
        Some(c) => {
            assert_eq!(c / 1000, i64::from(status), "error code and status disagree: {}", text());
            if !body.is_empty() && header(&resp, "content-type").is_some_and(|t| t.contains("json")) {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("error body not JSON ({e}): {}", text()));
                assert_eq!(v.get("errorCode").and_then(serde_json::Value::as_i64), Some(c), "body and header codes differ: {}", text());
            }
        }
        None if status == 401 && is_tpm_challenge(body) => {}
        None if status >= 400 => assert!(body.is_empty(), "an error without a DPS code: {}", text()),
        None => {}
    }
    status
}

/// The HTTPS (or console) port's request path; see the module doc for the input's form.
pub fn http_request(data: &[u8]) {
    let h = harness();
    let spec = spec(data, &h.scope);
    let surface = if spec.flags & 1 != 0 { Surface::Console } else { Surface::Device };
    let answer = h.runtime.block_on(exchange(h, surface, render(&spec, h), false));
    check_answer(&answer);
}

/// The WebSocket bridge: an upgrade to MQTT (flags bit 0 clear) or AMQP (`AMQPWSB10`, bit 0 set), then the
/// rest of the input as the client's raw WebSocket frames. The server must answer 101, write only whole
/// frames, and end the connection when the client's stream ends.
pub fn websocket(data: &[u8]) {
    let h = harness();
    let (flags, frames) = data.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
    let protocol = if flags & 1 != 0 { "AMQPWSB10" } else { "mqtt" };
    let head = format!(
        "GET /$iothub/websocket HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: {protocol}\r\n\r\n"
    );
    let answer = h.runtime.block_on(exchange(h, Surface::Device, [head.as_bytes(), frames].concat(), true));
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = resp.parse(&answer) else {
        panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(&answer))
    };
    assert_eq!(resp.code, Some(101), "the upgrade was refused: {:?}", String::from_utf8_lossy(&answer));
    check_frames(answer.get(n..).unwrap_or_default());
}

/// The server's frames (unmasked, RFC 6455 §5.2) are whole.
fn check_frames(mut rest: &[u8]) {
    while let [b0, b1, tail @ ..] = rest {
        assert_eq!(b1 & 0x80, 0, "a server frame is masked");
        let _opcode = b0 & 0x0f;
        let (len, tail) = match b1 & 0x7f {
            126 => (tail.get(..2).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(|b| usize::from(u16::from_be_bytes(b))), tail.get(2..)),
            127 => (
                tail.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes).and_then(|l| usize::try_from(l).ok()),
                tail.get(8..),
            ),
            l => (Some(usize::from(l)), Some(tail)),
        };
        let (Some(len), Some(tail)) = (len, tail) else { panic!("a truncated frame header") };
        rest = tail.get(len..).unwrap_or_else(|| panic!("a truncated frame: {len} bytes announced, {} sent", tail.len()));
    }
    assert!(rest.is_empty(), "a truncated frame header");
}
