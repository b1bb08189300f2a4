//! Every listener is bounded (#14 item 1 and the HTTP part of item 2): TLS handshake, first request / packet,
//! idle, per-packet and write deadlines, connection caps in total and per source address, and the HTTP body
//! budget. Deadlines are configured short; tests wait for the outcome (the server closes, an answer arrives)
//! under a generous outer timeout and never measure time.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::TestService;
use dps_service::config::Overrides;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Far above every deadline the tests configure (1–2 s), far below the defaults (10 s and more).
const OUTCOME: Duration = Duration::from_secs(8);

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

fn short() -> Overrides {
    Overrides {
        http_handshake_timeout_secs: Some(1),
        http_idle_timeout_secs: Some(1),
        http_body_timeout_secs: Some(1),
        amqp_handshake_timeout_secs: Some(1),
        amqp_frame_timeout_secs: Some(1),
        mqtt_connect_timeout_secs: Some(1),
        mqtt_packet_timeout_secs: Some(1),
        mqtt_max_keep_alive_secs: Some(1),
        write_timeout_secs: Some(1),
        ..Default::default()
    }
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {base}"))
}

/// HTTPS, console, MQTT, AMQP.
fn ports(s: &TestService) -> [(&'static str, u16); 4] {
    [("HTTPS", port_of(&s.base)), ("console", port_of(&s.console_base)), ("MQTT", s.mqtt_port), ("AMQP", s.amqp_port)]
}

async fn tcp_from(source: [u8; 4], port: u16) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::from(source), 0))?;
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await
}

async fn tls_from(s: &TestService, source: [u8; 4], port: u16) -> std::io::Result<Tls> {
    let tcp = tcp_from(source, port).await?;
    let connector = TlsConnector::from(Arc::new(common::tls_client_config(&s.ca_pem)));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("converts");
    tokio::time::timeout(OUTCOME, connector.connect(name, tcp))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the TLS handshake neither finished nor failed")))
}

async fn tls(s: &TestService, port: u16) -> Tls {
    tls_from(s, [127, 0, 0, 1], port).await.expect("tls from")
}

/// Whether the server closes the connection (EOF or error) within [`OUTCOME`], reading and dropping what it sends.
async fn closed_by_server<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(OUTCOME, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends `bytes` one at a time, a fifth of a second apart, until the server closes the connection.
async fn drip_until_closed<S: AsyncRead + AsyncWrite + Unpin>(stream: S, bytes: &[u8]) -> bool {
    send_until_closed(stream, bytes.chunks(1)).await
}

/// Sends `units` (cycled), a fifth of a second apart, until the server closes the connection.
async fn send_until_closed<'a, S: AsyncRead + AsyncWrite + Unpin>(stream: S, units: impl Iterator<Item = &'a [u8]> + Clone) -> bool {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let drip = async {
        for unit in units.cycle() {
            if wr.write_all(unit).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let closed = closed_by_server(&mut rd);
    tokio::select! {
        () = drip => true,
        c = closed => c,
    }
}

/// A raw HTTP/1.1 answer: the status and the head's text.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(OUTCOME, stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            other => panic!("no answer head: {other:?} after {:?}", String::from_utf8_lossy(&head)),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text}"));
    (status, text.to_ascii_lowercase())
}

#[tokio::test]
async fn a_client_that_never_sends_is_closed_at_the_handshake_deadline_on_every_listener() {
    let s = TestService::start_with(short()).await;
    for (what, port) in ports(&s) {
        let mut tcp = tcp_from([127, 0, 0, 1], port).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(closed_by_server(&mut tcp).await, "{what}: a silent TCP client was not closed");
    }
}

#[tokio::test]
async fn tls_without_a_request_or_connect_is_closed_on_every_listener() {
    let s = TestService::start_with(short()).await;
    for (what, port) in ports(&s) {
        let mut stream = tls(&s, port).await;
        assert!(closed_by_server(&mut stream).await, "{what}: a connection with TLS and nothing more was not closed");
    }
}

/// An HTTP/2 connection (ALPN h2) past the client preface and an empty SETTINGS frame.
async fn h2_connected(s: &TestService, port: u16) -> Tls {
    let tcp = tcp_from([127, 0, 0, 1], port).await.expect("TCP connect");
    let mut config = common::tls_client_config(&s.ca_pem);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut stream = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the listener speaks HTTP/2");
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.expect("preface");
    stream
}

#[tokio::test]
async fn http2_peers_that_drip_a_headers_frame_or_only_ping_are_closed() {
    let s = TestService::start_with(short()).await;
    for (what, port) in [("HTTPS", port_of(&s.base)), ("console", port_of(&s.console_base))] {
        // A HEADERS frame on stream 1 announcing 16,384 bytes of header block, the block dripped: bytes move
        // every fifth of a second, far inside the byte-level idle time, and no request ever starts.
        let mut headers = vec![0x00, 0x40, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x01];
        headers.extend(std::iter::repeat_n(0x40, 16_384));
        assert!(drip_until_closed(h2_connected(&s, port).await, &headers).await, "{what}: a dripped HEADERS frame was not cut off");
        // Whole PING frames, each answered, and no request.
        let ping: &[u8] = &[0x00, 0x00, 0x08, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(send_until_closed(h2_connected(&s, port).await, std::iter::once(ping)).await, "{what}: PINGs alone held the connection");
    }
}

#[tokio::test]
async fn peers_that_drip_a_request_head_or_body_are_closed() {
    let s = TestService::start_with(short()).await;
    let head = b"GET /service/info?api-version=2021-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    for (what, port) in [("HTTPS", port_of(&s.base)), ("console", port_of(&s.console_base))] {
        assert!(drip_until_closed(tls(&s, port).await, head).await, "{what}: a dripped request head was not cut off");
    }
    // A device register whose body arrives a byte at a time: answered 400 and closed at the body deadline.
    let mut stream = tls(&s, port_of(&s.base)).await;
    let put = format!(
        "PUT /{}/registrations/dev1/register?api-version=2019-03-31 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
        s.scope
    );
    stream.write_all(put.as_bytes()).await.expect("write all");
    assert!(drip_until_closed(stream, b"{\"registrationId\":").await, "a dripped body was not cut off");
}

fn connect_packet(s: &TestService, id: &str, keep_alive: u16) -> BytesMut {
    let mut c = Connect::new(id);
    c.keep_alive = keep_alive;
    c.set_login(format!("{}/registrations/{id}/api-version=2019-03-31", s.scope), "SharedAccessSignature sr=x&sig=y&se=1");
    let mut out = BytesMut::new();
    Packet::Connect(c).write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    out
}

/// Connects over TLS and reads the CONNACK.
async fn mqtt_connected(s: &TestService, keep_alive: u16) -> Tls {
    let mut stream = tls(s, s.mqtt_port).await;
    stream.write_all(&connect_packet(s, "dev1", keep_alive)).await.expect("write all");
    let mut connack = [0u8; 4];
    tokio::time::timeout(OUTCOME, stream.read_exact(&mut connack))
        .await
        .unwrap_or_else(|_| panic!("no CONNACK"))
        .expect("reads the CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    stream
}

#[tokio::test]
async fn an_mqtt_packet_dripped_after_connect_is_cut_off_at_the_packet_deadline() {
    let s = TestService::start_with(Overrides { mqtt_max_keep_alive_secs: Some(3600), ..short() }).await;
    let stream = mqtt_connected(&s, 3600).await;
    let mut publish = BytesMut::new();
    let p = Publish::new("$dps/registrations/PUT/iotdps-register/?$rid=1", QoS::AtMostOnce, vec![b'x'; 64]);
    Packet::Publish(p).write(&mut publish, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(drip_until_closed(stream, &publish).await, "a dripped PUBLISH was not cut off");
}

#[tokio::test]
async fn mqtt_keep_alive_zero_or_huge_is_held_to_the_server_maximum() {
    let s = TestService::start_with(short()).await;
    for keep_alive in [0, u16::MAX] {
        let mut stream = mqtt_connected(&s, keep_alive).await;
        assert!(closed_by_server(&mut stream).await, "keep-alive {keep_alive}: a silent session was not closed");
    }
}

#[tokio::test]
async fn an_amqp_frame_dripped_after_the_header_is_cut_off() {
    let s = TestService::start_with(Overrides { amqp_handshake_timeout_secs: Some(30), ..short() }).await;
    let mut stream = tls(&s, s.amqp_port).await;
    stream.write_all(b"AMQP\x00\x01\x00\x00").await.expect("write all");
    let frame = [0u8, 0, 0, 64, 2, 0, 0, 0, 0, 0x53, 0x10];
    assert!(drip_until_closed(stream, &frame).await, "a dripped AMQP frame was not cut off");
}

/// Whether a fresh TLS connection from `source` gets through (the handshake finishes and the server does not
/// close it at once: it answers a request).
async fn served_from(s: &TestService, source: [u8; 4], port: u16) -> bool {
    let Ok(mut stream) = tls_from(s, source, port).await else { return false };
    let get = b"GET /service/ca.pem HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(get).await.is_err() {
        return false;
    }
    let mut first = [0u8; 12];
    matches!(tokio::time::timeout(OUTCOME, stream.read_exact(&mut first)).await, Ok(Ok(_))) && first.starts_with(b"HTTP/1.1 200")
}

/// Tries until a connection is served again (the server has to notice the freed place first).
async fn served_again(s: &TestService, source: [u8; 4], port: u16) -> bool {
    for _ in 0..100 {
        if served_from(s, source, port).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Tries until a TLS connection from 127.0.0.1 is admitted again and kept (MQTT, AMQP: no request needed).
async fn admitted_again(s: &TestService, port: u16) -> Option<Tls> {
    for _ in 0..100 {
        if let Ok(mut stream) = tls_from(s, [127, 0, 0, 1], port).await {
            let mut b = [0u8; 1];
            if tokio::time::timeout(Duration::from_millis(300), stream.read(&mut b)).await.is_err() {
                return Some(stream);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Whether a TLS handshake from `source` is refused (the server closed the connection at accept).
async fn refused_from(s: &TestService, source: [u8; 4], port: u16) -> bool {
    match tls_from(s, source, port).await {
        Err(e) => e.kind() != std::io::ErrorKind::TimedOut,
        Ok(mut stream) => {
            // TLS 1.3: the client may finish before the server's close reaches it.
            let mut b = [0u8; 1];
            matches!(tokio::time::timeout(Duration::from_millis(500), stream.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
        }
    }
}

#[tokio::test]
async fn connections_over_the_caps_are_closed_at_accept_on_every_listener() {
    let s = TestService::start_with(Overrides {
        max_connections: Some(2),
        max_connections_per_ip: Some(1),
        mqtt_connect_timeout_secs: Some(60),
        amqp_handshake_timeout_secs: Some(60),
        ..Default::default()
    })
    .await;
    for (what, port) in ports(&s) {
        let first = tls_from(&s, [127, 0, 0, 1], port).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(refused_from(&s, [127, 0, 0, 1], port).await, "{what}: a second connection from one address was admitted");
        let other = tls_from(&s, [127, 0, 0, 2], port).await.unwrap_or_else(|e| panic!("{what}: another address: {e}"));
        assert!(refused_from(&s, [127, 0, 0, 3], port).await, "{what}: a third connection in total was admitted");
        drop(first);
        if what == "HTTPS" || what == "console" {
            assert!(served_again(&s, [127, 0, 0, 1], port).await, "{what}: a closed connection's place was not freed");
        } else {
            assert!(admitted_again(&s, port).await.is_some(), "{what}: a closed connection's place was not freed");
        }
        drop(other);
    }
    let metrics = metrics_text(&s).await;
    for (what, _) in ports(&s) {
        let refused = format!("dps_connections_refused_total{{listener=\"{what}\"}} ");
        let n: u64 = metrics.lines().find_map(|l| l.strip_prefix(refused.as_str())?.parse().ok()).unwrap_or(0);
        assert!(n >= 2, "{what}: /metrics counts the refusals: {metrics}");
        assert!(metrics.contains(&format!("dps_connections_open{{listener=\"{what}\"}} ")), "{metrics}");
    }
}

/// `GET /metrics` on the HTTPS port (retried while the caps still count connections that are closing).
async fn metrics_text(s: &TestService) -> String {
    for _ in 0..100 {
        if let Ok(mut stream) = tls_from(s, [127, 0, 0, 4], port_of(&s.base)).await {
            let get = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let mut text = String::new();
            if stream.write_all(get).await.is_ok()
                && matches!(tokio::time::timeout(OUTCOME, stream.read_to_string(&mut text)).await, Ok(Ok(_)))
                && text.starts_with("HTTP/1.1 200")
            {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("GET /metrics was never answered");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_write_deadline() {
    let s = TestService::start_with(Overrides { max_connections_per_ip: Some(1), write_timeout_secs: Some(1), ..Default::default() }).await;
    let port = port_of(&s.base);
    // Pipelined requests whose answers (the CA certificate, each ~1 KB) pile up far past the socket buffers.
    let mut stalled = tls(&s, port).await;
    let requests = b"GET /service/ca.pem HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(40_000);
    let writer = tokio::spawn(async move {
        let _ = stalled.write_all(&requests).await;
        let _ = stalled.flush().await;
        // Holds the connection without reading until the server gives up on it.
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(stalled);
    });
    assert!(refused_from(&s, [127, 0, 0, 1], port).await, "the stalled connection holds the address's one place");
    assert!(served_again(&s, [127, 0, 0, 1], port).await, "the stalled connection's task did not end");
    writer.abort();
}

#[tokio::test]
async fn an_mqtt_client_that_stops_reading_is_closed_at_the_write_deadline() {
    let s = TestService::start_with(Overrides {
        max_connections_per_ip: Some(1),
        write_timeout_secs: Some(1),
        mqtt_connect_timeout_secs: Some(30),
        ..Default::default()
    })
    .await;
    let mut stalled = mqtt_connected(&s, 60).await;
    // Subscribed, then requests whose error answers (each several times the request) pile up unread.
    let mut out = BytesMut::new();
    let mut sub = rumqttc::mqttbytes::v4::Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    Packet::Subscribe(sub).write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    for i in 0..40_000 {
        let p = Publish::new(format!("$dps/registrations/PUT/iotdps-register/?$rid={i}"), QoS::AtMostOnce, Vec::new());
        Packet::Publish(p).write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    }
    let writer = tokio::spawn(async move {
        let _ = stalled.write_all(&out).await;
        let _ = stalled.flush().await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(stalled);
    });
    assert!(refused_from(&s, [127, 0, 0, 1], s.mqtt_port).await, "the stalled session holds the address's one place");
    assert!(admitted_again(&s, s.mqtt_port).await.is_some(), "the stalled session's task did not end");
    writer.abort();
}

#[tokio::test]
async fn an_unauthorised_service_request_is_answered_401_before_its_body_is_sent() {
    let s = TestService::start().await;
    let mut stream = tls(&s, port_of(&s.base)).await;
    let head = "PUT /enrollments/big?api-version=2021-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: SharedAccessSignature sr=127.0.0.1&sig=bad&se=99999999999&skn=provisioningserviceowner\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write all");
    let (status, text) = read_head(&mut stream).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("x-ms-error-code: 401002"), "{text}");
}

#[tokio::test]
async fn the_sign_in_body_is_small() {
    let s = TestService::start().await;
    let body = format!("{{\"username\":\"admin\",\"password\":\"{}\"}}", "x".repeat(8 * 1024));
    let r = s
        .http
        .post(format!("{}/console/login", s.console_base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sends");
    assert_eq!(r.status().as_u16(), 413);
}

#[tokio::test]
async fn a_spent_body_budget_is_503_with_retry_after_and_the_dps_error() {
    let s = TestService::start_with(Overrides { http_body_budget_bytes: Some(4096), ..Default::default() }).await;
    // One authorised request holds 3,500 bytes of the budget and sends no more.
    let mut holder = tls(&s, port_of(&s.base)).await;
    let head = format!(
        "PUT /enrollments/held?api-version=2021-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        s.service_sas()
    );
    holder.write_all(head.as_bytes()).await.expect("write all");
    holder.write_all(&[b' '; 3500]).await.expect("write all");
    holder.flush().await.expect("flush");
    let body = format!("{{\"registrationId\":\"b\",\"attestation\":{{\"type\":\"symmetricKey\"}},\"x\":\"{}\"}}", " ".repeat(1500));
    let mut refused = None;
    for _ in 0..100 {
        let a = s.service(reqwest::Method::PUT, "/enrollments/b", Some(serde_json::from_str(&body).unwrap_or_default())).await;
        if a.status == 503 {
            refused = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = refused.unwrap_or_else(|| panic!("the budget was never spent"));
    TestService::assert_error(&a, 503, 503001);
    assert!(a.headers.get("retry-after").is_some(), "503 without retry-after");
    drop(holder);
    let mut served = false;
    for _ in 0..100 {
        if s.service(reqwest::Method::GET, "/service/info", None).await.status == 200
            && s.service(reqwest::Method::PUT, "/enrollments/b", Some(serde_json::from_str(&body).unwrap_or_default())).await.status != 503
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the budget did not come back when the holder went");
}

/// A WebSocket carrying MQTT on the HTTPS port.
async fn mqtt_ws(s: &TestService) -> tokio_tungstenite::WebSocketStream<Tls> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let port = port_of(&s.base);
    let mut req = format!("wss://127.0.0.1:{port}/$iothub/websocket").into_client_request().expect("into client request");
    req.headers_mut().insert("sec-websocket-protocol", "mqtt".parse().unwrap_or_else(|e| panic!("{e:?}")));
    tokio_tungstenite::client_async(req, tls(s, port).await).await.expect("client async").0
}

/// The next binary message, or `None` when the server closed the WebSocket.
async fn next_binary(ws: &mut tokio_tungstenite::WebSocketStream<Tls>) -> Option<Vec<u8>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(OUTCOME, ws.next()).await.unwrap_or_else(|_| panic!("neither an answer nor a close")) {
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn send_binary(ws: &mut tokio_tungstenite::WebSocketStream<Tls>, bytes: &[u8]) {
    use futures_util::SinkExt;
    let msg = tokio_tungstenite::tungstenite::Message::Binary(bytes::Bytes::copy_from_slice(bytes));
    ws.send(msg).await.expect("sends");
}

#[tokio::test]
async fn mqtt_over_websockets_keeps_the_keep_alive_not_the_http_idle_time() {
    // HTTP connections idle for 1 s are closed; an MQTT session over a WebSocket lives by its keep-alive.
    let s = TestService::start_with(Overrides { mqtt_max_keep_alive_secs: Some(3600), ..short() }).await;
    let mut ws = mqtt_ws(&s).await;
    send_binary(&mut ws, &connect_packet(&s, "dev1", 2)).await;
    assert_eq!(next_binary(&mut ws).await, Some(vec![0x20, 2, 0, 0]), "CONNACK");
    for _ in 0..3 {
        // Pings further apart than the HTTP idle time, within the keep-alive's 3 s.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        send_binary(&mut ws, &[0xC0, 0]).await;
        assert_eq!(next_binary(&mut ws).await, Some(vec![0xD0, 0]), "PINGRESP");
    }
    // Silence past 1.5 × keep-alive: the session ends and so does the WebSocket.
    assert_eq!(next_binary(&mut ws).await, None);
}

#[tokio::test]
async fn mqtt_over_websockets_with_keep_alive_zero_is_closed_after_the_server_maximum() {
    let s = TestService::start_with(short()).await;
    let mut ws = mqtt_ws(&s).await;
    send_binary(&mut ws, &connect_packet(&s, "dev1", 0)).await;
    assert_eq!(next_binary(&mut ws).await, Some(vec![0x20, 2, 0, 0]), "CONNACK");
    assert_eq!(next_binary(&mut ws).await, None, "a silent session with keep-alive 0 was not closed");
}

#[tokio::test]
async fn an_authorised_request_answered_with_connection_close_is_closed_after_its_answer() {
    let s = TestService::start().await;
    let mut stream = tls(&s, port_of(&s.base)).await;
    let head = format!(
        "POST /enrollments/query?api-version=2021-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 1048578\r\nConnection: close\r\n\r\n\"",
        s.service_sas()
    );
    stream.write_all(head.as_bytes()).await.expect("write all");
    stream.write_all(&vec![b'q'; 1_048_576]).await.expect("write all");
    stream.write_all(b"\"").await.expect("write all");
    let (status, text) = read_head(&mut stream).await;
    assert_eq!(status, 400, "{text}");
    assert!(closed_by_server(&mut stream).await, "the connection stayed open after a `connection: close` answer");
}
