//! The AMQP endpoint at the protocol level (§3): fe2o3-amqp's client side for the flows (SASL PLAIN, no-SASL
//! X.509, dispositions, credit, message size) and raw frames for what a well-behaved client never sends
//! (mechanism list, garbage, oversized frames, silence).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::TestService;
use dps_service::config::Overrides;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::definitions::{AmqpError, ConnectionError, ErrorCondition};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, MessageId, Outcome, Properties};
use fe2o3_amqp::types::performatives::{Close, Open};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Uuid, Value};
use fe2o3_amqp::{Connection, Session};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_with(s: &TestService, config: rustls::ClientConfig) -> Tls {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.amqp_port)).await.expect("connect to the AMQP port");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake")
}

async fn tls(s: &TestService) -> Tls {
    tls_with(s, common::tls_client_config(&s.ca_pem)).await
}

fn address(s: &TestService, id: &str) -> String {
    format!("{}/registrations/{id}", s.scope)
}

/// A device's connection, session and its two links, opened as the Node SDK does (receiver first).
struct Device {
    connection: fe2o3_amqp::connection::ConnectionHandle<()>,
    session: fe2o3_amqp::session::SessionHandle<()>,
    sender: Sender,
    receiver: Receiver,
}

async fn open<S>(stream: S, sasl: Option<SaslProfile>, link_address: &str, credit: CreditMode) -> Device
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let mut builder = Connection::builder().container_id("test-device").hostname("127.0.0.1");
    if let Some(p) = sasl {
        builder = builder.sasl_profile(p);
    }
    let mut connection = builder.open_with_stream(stream).await.expect("AMQP open");
    let mut session = Session::begin(&mut connection).await.expect("begin");
    let receiver = Receiver::builder()
        .name("recv_link")
        .source(link_address.to_owned())
        .credit_mode(credit)
        .attach(&mut session)
        .await
        .expect("attach receiver");
    let sender = Sender::attach(&mut session, "sender_link", link_address.to_owned()).await.expect("attach sender");
    Device { connection, session, sender, receiver }
}

async fn open_plain(s: &TestService, id: &str, key: &str) -> Device {
    let sas = s.device_sas(id, key, s.now() + 3600);
    let sasl = SaslProfile::Plain { username: address(s, id), password: sas };
    open(tls(s).await, Some(sasl), &format!("amqps://127.0.0.1/{}", address(s, id)), CreditMode::Auto(10)).await
}

fn request(
    operation: &str,
    operation_id: Option<&str>,
    correlation: MessageId,
    body: &[u8],
) -> Message<fe2o3_amqp::types::messaging::Data> {
    let mut props = ApplicationProperties::builder().insert("iotdps-operation-type", operation.to_owned());
    if let Some(op) = operation_id {
        props = props.insert("iotdps-operation-id", op.to_owned());
    }
    Message::builder()
        .properties(Properties::builder().correlation_id(correlation).build())
        .application_properties(props.build())
        .data(Binary::from(body.to_vec()))
        .build()
}

struct Response {
    correlation: Option<MessageId>,
    retry_after: Vec<(String, SimpleValue)>,
    body: Json,
}

async fn response(d: &mut Device) -> Response {
    let delivery: Delivery<Body<Value>> =
        tokio::time::timeout(Duration::from_secs(10), d.receiver.recv()).await.expect("a response within 10 s").expect("receive");
    d.receiver.accept(&delivery).await.expect("settle the response");
    let message = delivery.into_message();
    let data = match &message.body {
        Body::Data(batch) => {
            assert_eq!(batch.len(), 1, "§0.8 exactly one data section");
            batch.iter().flat_map(|d| d.0.iter().copied()).collect::<Vec<u8>>()
        }
        other => panic!("§0.8 the response body must be a data section, got {other:?}"),
    };
    let retry_after = message
        .application_properties
        .map(|p| p.0.into_iter().filter(|(k, _)| k.eq_ignore_ascii_case("retry-after")).collect())
        .unwrap_or_default();
    Response {
        correlation: message.properties.and_then(|p| p.correlation_id),
        retry_after,
        body: serde_json::from_slice(&data).expect("UTF-8 JSON body"),
    }
}

async fn register_and_poll(d: &mut Device) -> Json {
    let outcome = d.sender.send(request("iotdps-register", None, MessageId::String("c-1".into()), b"")).await.expect("send");
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    let first = response(d).await;
    assert_eq!(first.body["status"], "assigning", "{}", first.body);
    let op = first.body["operationId"].as_str().expect("operationId").to_owned();
    for i in 0..100 {
        let outcome = d.sender.send(request("iotdps-get-operationstatus", Some(&op), MessageId::Ulong(i), b"")).await.expect("send");
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
        let r = response(d).await;
        assert_eq!(r.correlation, Some(MessageId::Ulong(i)), "§0.8 the correlation-id keeps its AMQP type");
        if r.body["status"] != "assigning" {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("operation {op} did not finish");
}

#[tokio::test]
async fn sasl_plain_register_and_poll_to_assigned() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-dev-1", json!({})).await;
    let mut d = open_plain(&s, "amqp-dev-1", &key).await;
    let uuid = Uuid::from([7u8; 16]);
    let outcome =
        d.sender.send(request("iotdps-register", None, MessageId::Uuid(uuid.clone()), b"{\"registrationId\":\"amqp-dev-1\"}")).await;
    assert!(matches!(outcome, Ok(Outcome::Accepted(_))), "{outcome:?}");
    let r = response(&mut d).await;
    assert_eq!(r.correlation, Some(MessageId::Uuid(uuid)), "§0.8 correlation-id echoed with its type (uuid)");
    assert_eq!(r.body["status"], "assigning");
    let names: Vec<&str> = r.retry_after.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"retry-after") && names.contains(&"Retry-After"), "§0.8 both spellings: {names:?}");
    assert!(r.retry_after.iter().all(|(_, v)| *v == SimpleValue::Int(2)), "{:?}", r.retry_after);
    let done = register_and_poll(&mut d).await;
    assert_eq!(done["status"], "assigned", "{done}");
    assert_eq!(done["registrationState"]["assignedHub"], dps_service::DEFAULT_HUB);
    d.connection.close().await.expect("close");
}

#[tokio::test]
async fn a_wrong_key_is_a_rejected_disposition_with_the_dps_error_body() {
    let s = TestService::start().await;
    s.enroll("amqp-bad", json!({})).await;
    let mut d = open_plain(&s, "amqp-bad", &dps_crypto::generate_key()).await;
    let outcome = d.sender.send(request("iotdps-register", None, MessageId::String("c".into()), b"")).await.expect("send");
    let Outcome::Rejected(rejected) = outcome else { panic!("§3.4 a refusal is `rejected`, got {outcome:?}") };
    let error = rejected.error.expect("rejected carries an error");
    assert_eq!(error.condition, ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess));
    let body: Json = serde_json::from_str(error.description.as_deref().expect("description")).expect("description is JSON");
    assert_eq!(body["errorCode"], 401002, "{body}");
    assert!(body["trackingId"].as_str().is_some_and(|t| !t.is_empty()) && body["timestampUtc"].is_string(), "{body}");
    assert!(error.info.is_none(), "no retry-after on a 401");
    // The connection stays usable: an unknown operation id is refused the same way (404).
    let outcome =
        d.sender.send(request("iotdps-get-operationstatus", Some("nope"), MessageId::String("c2".into()), b"")).await.expect("send");
    let Outcome::Rejected(r) = outcome else { panic!("{outcome:?}") };
    let e = r.error.expect("error");
    assert!(matches!(e.condition, ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess | AmqpError::NotFound)), "{e:?}");
}

#[tokio::test]
async fn an_over_long_correlation_id_is_rejected_with_400004() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-long-rid", json!({})).await;
    let mut d = open_plain(&s, "amqp-long-rid", &key).await;
    let long = MessageId::String("c".repeat(dps_proto::MAX_REQUEST_ID_CHARS + 1));
    let outcome = d.sender.send(request("iotdps-register", None, long, b"")).await.expect("send");
    let Outcome::Rejected(rejected) = outcome else { panic!("an over-long correlation-id is refused, got {outcome:?}") };
    let error = rejected.error.expect("rejected carries an error");
    let body: Json = serde_json::from_str(error.description.as_deref().expect("description")).expect("description is JSON");
    assert_eq!(body["errorCode"], 400004, "{body}");
    // The bound itself is accepted, and the connection stays usable.
    let ok = MessageId::String("c".repeat(dps_proto::MAX_REQUEST_ID_CHARS));
    let outcome = d.sender.send(request("iotdps-register", None, ok.clone(), b"")).await.expect("send");
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    assert_eq!(response(&mut d).await.correlation, Some(ok));
}

#[tokio::test]
async fn a_request_without_an_operation_type_is_rejected_as_an_argument_error() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-noop", json!({})).await;
    let mut d = open_plain(&s, "amqp-noop", &key).await;
    let message = Message::builder().data(Binary::from(b"{}".to_vec())).build();
    let Outcome::Rejected(r) = d.sender.send(message).await.expect("send") else { panic!("expected rejected") };
    let e = r.error.expect("error");
    assert_eq!(e.condition, ErrorCondition::Custom("com.microsoft:argument-error".into()), "{e:?}");
    let body: Json = serde_json::from_str(e.description.as_deref().unwrap_or_default()).expect("json");
    assert_eq!(body["errorCode"].as_i64().map(|c| c / 1000), Some(400), "{body}");
}

#[tokio::test]
async fn a_disabled_enrollment_is_a_normal_response_not_a_rejection() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-dis", json!({ "provisioningStatus": "disabled" })).await;
    let mut d = open_plain(&s, "amqp-dis", &key).await;
    let done = register_and_poll(&mut d).await;
    assert_eq!(done["status"], "disabled", "{done}");
}

#[tokio::test]
async fn x509_devices_speak_amqp_without_a_sasl_layer() {
    let s = TestService::start().await;
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "amqp-x509-dev");
    let cert = params.self_signed(&key).expect("cert");
    let doc = json!({ "registrationId": "amqp-x509-dev", "attestation": { "type": "x509", "x509": { "clientCertificates": { "primary": { "certificate": cert.pem() } } } } });
    assert_eq!(s.service(reqwest::Method::PUT, "/enrollments/amqp-x509-dev", Some(doc)).await.status, 200);
    let config = common::tls_client_config_with_cert(&s.ca_pem, &[cert.der().to_vec()], &key.serialize_der());
    let stream = tls_with(&s, config).await;
    let mut d = open(stream, None, &format!("/{}", address(&s, "amqp-x509-dev")), CreditMode::Auto(10)).await;
    let done = register_and_poll(&mut d).await;
    assert_eq!(done["status"], "assigned", "{done}");
    assert_eq!(done["registrationState"]["x509"]["certificateInfo"]["subjectName"], "CN=amqp-x509-dev");
}

#[tokio::test]
async fn a_response_waits_for_link_credit() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-credit", json!({})).await;
    let sas = s.device_sas("amqp-credit", &key, s.now() + 3600);
    let sasl = SaslProfile::Plain { username: address(&s, "amqp-credit"), password: sas };
    let mut d = open(tls(&s).await, Some(sasl), &address(&s, "amqp-credit"), CreditMode::Manual).await;
    let outcome = d.sender.send(request("iotdps-register", None, MessageId::String("c".into()), b"")).await.expect("send");
    assert!(matches!(outcome, Outcome::Accepted(_)), "the request is settled at once: {outcome:?}");
    let early = tokio::time::timeout(Duration::from_millis(500), d.receiver.recv::<Body<Value>>()).await;
    assert!(early.is_err(), "no response may arrive before the device grants credit");
    d.receiver.set_credit(1).await.expect("grant credit");
    let r = response(&mut d).await;
    assert_eq!(r.body["status"], "assigning");
}

#[tokio::test]
async fn links_advertise_the_64_kib_message_limit_and_oversized_requests_are_refused() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-big", json!({})).await;
    let mut d = open_plain(&s, "amqp-big", &key).await;
    assert_eq!(d.sender.max_message_size(), Some(64 * 1024), "§0.13 max-message-size 65,536");
    let big = vec![b' '; 70 * 1024];
    let sent = d.sender.send(request("iotdps-register", None, MessageId::String("c".into()), &big)).await;
    assert!(sent.is_err(), "a message above max-message-size must not go through: {sent:?}");
    let _ = &d.session;
}

#[tokio::test]
async fn links_naming_another_device_than_the_sasl_identity_are_refused() {
    let s = TestService::start().await;
    let key = s.enroll("amqp-me", json!({})).await;
    let sas = s.device_sas("amqp-me", &key, s.now() + 3600);
    let sasl = SaslProfile::Plain { username: address(&s, "amqp-me"), password: sas };
    let mut connection = Connection::builder()
        .container_id("t")
        .hostname("127.0.0.1")
        .sasl_profile(sasl)
        .open_with_stream(tls(&s).await)
        .await
        .expect("open");
    let mut session = Session::begin(&mut connection).await.expect("begin");
    let mut sender = Sender::attach(&mut session, "s", address(&s, "someone-else")).await.expect("attach");
    let sent = tokio::time::timeout(Duration::from_secs(5), sender.send(request("iotdps-register", None, MessageId::Ulong(1), b""))).await;
    assert!(!matches!(sent, Ok(Ok(Outcome::Accepted(_)))), "a link to another device must not carry requests: {sent:?}");
}

// ---- raw frames ----------------------------------------------------------------------------------

async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(buf),
        Ok(Err(_)) => None,
        Err(_) => panic!("the server neither answered nor closed within 10 s"),
    }
}

/// The next frame (size, type, channel, body), or `None` at EOF.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let size = u32::from_be_bytes(read_exact(s, 4).await?.try_into().ok()?) as usize;
    let rest = read_exact(s, size - 4).await?;
    let doff = usize::from(rest[0]) * 4;
    Some((rest[1], rest[doff - 4..].to_vec()))
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32((body.len() + 8) as u32);
    out.extend_from_slice(&[2, kind, 0, 0]);
    out.extend_from_slice(body);
    out
}

async fn expect_eof<S: AsyncRead + Unpin>(s: &mut S) {
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await.expect("closed within 10 s");
    assert!(n.is_ok() || rest.is_empty());
}

/// Reads the close the server ends with (after its open, if it sent one) and returns its error condition.
async fn close_condition<S: AsyncRead + Unpin>(s: &mut S) -> Option<ErrorCondition> {
    while let Some((_, body)) = read_frame(s).await {
        if body.is_empty() {
            continue; // heartbeat
        }
        if let Ok(close) = serde_amqp::from_slice::<Close>(&body) {
            return close.error.map(|e| e.condition);
        }
        assert!(serde_amqp::from_slice::<Open>(&body).is_ok(), "only open, heartbeats and close may come before the close");
    }
    None
}

#[tokio::test]
async fn the_sasl_layer_offers_tpm_and_plain() {
    let s = TestService::start().await;
    let mut t = tls(&s).await;
    t.write_all(b"AMQP\x03\x01\x00\x00").await.expect("write");
    assert_eq!(read_exact(&mut t, 8).await.as_deref(), Some(&b"AMQP\x03\x01\x00\x00"[..]), "SASL header echoed");
    let (kind, body) = read_frame(&mut t).await.expect("sasl-mechanisms");
    assert_eq!(kind, 1, "a SASL frame");
    let mechanisms: fe2o3_amqp::types::sasl::SaslMechanisms = serde_amqp::from_slice(&body).expect("sasl-mechanisms");
    let names: Vec<String> = mechanisms.sasl_server_mechanisms.0.iter().map(|m| m.to_string()).collect();
    assert_eq!(names, ["TPM", "PLAIN"], "§3.1 TPM and PLAIN offered");
}

#[tokio::test]
async fn tpm_sasl_is_routed_to_the_attestation_port_and_refused_with_auth() {
    let s = TestService::start().await;
    let mut t = tls(&s).await;
    t.write_all(b"AMQP\x03\x01\x00\x00").await.expect("write");
    read_exact(&mut t, 8).await.expect("header");
    read_frame(&mut t).await.expect("mechanisms");
    let mut init = vec![0u8];
    init.extend_from_slice(s.scope.as_bytes());
    init.extend_from_slice(b"\0tpm-dev\0\x01\x16\x00\x01");
    let init = fe2o3_amqp::types::sasl::SaslInit { mechanism: "TPM".into(), initial_response: Some(Binary::from(init)), hostname: None };
    t.write_all(&frame(1, &serde_amqp::to_vec(&init).expect("encode"))).await.expect("write");
    let (_, body) = read_frame(&mut t).await.expect("challenge");
    let challenge: fe2o3_amqp::types::sasl::SaslChallenge = serde_amqp::from_slice(&body).expect("sasl-challenge");
    assert_eq!(challenge.challenge.into_vec(), vec![0u8], "§3.3 frame 2: one byte 0x00 asks for the SRK");
    let response = fe2o3_amqp::types::sasl::SaslResponse { response: Binary::from(vec![0u8, 1, 2, 3]) };
    t.write_all(&frame(1, &serde_amqp::to_vec(&response).expect("encode"))).await.expect("write");
    let (_, body) = read_frame(&mut t).await.expect("outcome");
    let outcome: fe2o3_amqp::types::sasl::SaslOutcome = serde_amqp::from_slice(&body).expect("sasl-outcome");
    assert_eq!(outcome.code, fe2o3_amqp::types::sasl::SaslCode::Auth, "an EK the service cannot attest is refused with `auth`");
}

#[tokio::test]
async fn garbage_after_the_protocol_header_closes_with_a_framing_error() {
    let s = TestService::start().await;
    let mut t = tls(&s).await;
    t.write_all(b"AMQP\x00\x01\x00\x00").await.expect("write");
    t.write_all(&[0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef]).await.expect("write");
    assert_eq!(read_exact(&mut t, 8).await.as_deref(), Some(&b"AMQP\x00\x01\x00\x00"[..]));
    assert_eq!(close_condition(&mut t).await, Some(ErrorCondition::ConnectionError(ConnectionError::FramingError)));
    expect_eof(&mut t).await;
    // The service is alive and still provisions.
    let key = s.enroll("amqp-after-garbage", json!({})).await;
    let mut d = open_plain(&s, "amqp-after-garbage", &key).await;
    assert_eq!(register_and_poll(&mut d).await["status"], "assigned");
}

#[tokio::test]
async fn a_frame_above_max_frame_size_closes_the_connection() {
    let s = TestService::start().await;
    let mut t = tls(&s).await;
    t.write_all(b"AMQP\x00\x01\x00\x00").await.expect("write");
    let mut huge = BytesMut::new();
    huge.put_u32(1 << 20);
    huge.extend_from_slice(&[2, 0, 0, 0]);
    t.write_all(&huge).await.expect("write");
    read_exact(&mut t, 8).await.expect("header");
    assert_eq!(close_condition(&mut t).await, Some(ErrorCondition::ConnectionError(ConnectionError::FramingError)));
}

#[tokio::test]
async fn an_unsupported_protocol_header_gets_ours_and_a_close() {
    let s = TestService::start().await;
    let mut t = tls(&s).await;
    t.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    assert_eq!(read_exact(&mut t, 8).await.as_deref(), Some(&b"AMQP\x00\x01\x00\x00"[..]), "AMQP 1.0 §2.2");
    expect_eof(&mut t).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_idle_timeout() {
    let s = TestService::start_with(Overrides { amqp_idle_timeout_secs: Some(1), ..Default::default() }).await;
    let mut t = tls(&s).await;
    t.write_all(b"AMQP\x00\x01\x00\x00").await.expect("write");
    let open = dps_service::amqp::guard::bare_open("silent");
    t.write_all(&frame(0, &serde_amqp::to_vec(&open).expect("encode"))).await.expect("write");
    read_exact(&mut t, 8).await.expect("header");
    let (_, body) = read_frame(&mut t).await.expect("the server's open");
    let theirs: Open = serde_amqp::from_slice(&body).expect("open");
    assert_eq!(theirs.idle_time_out, Some(1000), "the idle time-out is advertised");
    // The only reason the server has to close a silent, well-behaved connection is its idle time-out: the guard
    // closes with resource-limit-exceeded, or fe2o3's own idle timer (the same 1 s) drops the socket first.
    let condition = close_condition(&mut t).await;
    assert!(
        matches!(condition, Some(ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)) | None),
        "closed for silence: {condition:?}"
    );
    expect_eof(&mut t).await;
}

#[tokio::test]
async fn amqp_over_websockets_on_any_path() {
    let s = TestService::start().await;
    for path in ["/$iothub/websocket", "/"] {
        let tcp = tokio::net::TcpStream::connect(s.base.trim_start_matches("https://")).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = TlsConnector::from(Arc::new(common::tls_client_config(&s.ca_pem))).connect(name, tcp).await.expect("tls");
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("wss://127.0.0.1{path}"))
            .expect("request");
        req.headers_mut().insert("sec-websocket-protocol", "AMQPWSB10".parse().expect("header"));
        let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.expect("upgrade");
        assert_eq!(resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some("AMQPWSB10"));
        use futures_util::{SinkExt, StreamExt};
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(b"AMQP\x03\x01\x00\x00".to_vec().into())).await.expect("send");
        let mut got = Vec::new();
        while got.len() < 8 {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("answer") {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => got.extend_from_slice(&b),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert_eq!(&got[..8], b"AMQP\x03\x01\x00\x00", "{path}: the SASL layer answers over the WebSocket");
    }
}

/// Azure limits profile (§1.9, §3.4): a sixth poll within 10 s is `rejected` with the throttling condition Node
/// retries on, the 429001 body in `description` and both retry-after spellings in `info`.
#[tokio::test]
async fn a_sixth_poll_within_ten_seconds_is_rejected_as_throttled() {
    let s = TestService::start_with(Overrides { limits: Some("azure".into()), ..Default::default() }).await;
    let key = s.enroll("amqp-lim", json!({})).await;
    let mut d = open_plain(&s, "amqp-lim", &key).await;
    let outcome = d.sender.send(request("iotdps-register", None, MessageId::String("r".into()), b"")).await.expect("send");
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    let op = response(&mut d).await.body["operationId"].as_str().expect("operationId").to_owned();
    for i in 0..5 {
        let outcome = d.sender.send(request("iotdps-get-operationstatus", Some(&op), MessageId::Ulong(i), b"")).await.expect("send");
        assert!(matches!(outcome, Outcome::Accepted(_)), "poll {i}: {outcome:?}");
        response(&mut d).await;
    }
    let outcome = d.sender.send(request("iotdps-get-operationstatus", Some(&op), MessageId::Ulong(5), b"")).await.expect("send");
    let Outcome::Rejected(rejected) = outcome else { panic!("the sixth poll must be rejected, got {outcome:?}") };
    let error = rejected.error.expect("rejected carries an error");
    assert_eq!(
        error.condition,
        ErrorCondition::Custom(fe2o3_amqp::types::primitives::Symbol::from("com.microsoft:device-container-throttled"))
    );
    let body: Json = serde_json::from_str(error.description.as_deref().expect("description")).expect("JSON");
    assert_eq!(body["errorCode"], 429001, "{body}");
    let info = error.info.expect("info with retry-after");
    for name in ["retry-after", "Retry-After"] {
        assert_eq!(info.get(&fe2o3_amqp::types::primitives::Symbol::from(name)), Some(&Value::Int(10)), "{name}: {info:?}");
    }
    s.clock.advance(chrono::Duration::seconds(10));
    let outcome = d.sender.send(request("iotdps-get-operationstatus", Some(&op), MessageId::Ulong(6), b"")).await.expect("send");
    assert!(matches!(outcome, Outcome::Accepted(_)), "after the window: {outcome:?}");
    response(&mut d).await;
    d.connection.close().await.expect("close");
}
