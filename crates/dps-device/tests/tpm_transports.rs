//! The device side of TPM registration (§1.10 TPM over HTTPS, §3.3 the `TPM` SASL mechanism) with a real
//! software TPM, against in-test peers that play the service's part with `dps_crypto::tpm`'s blobs and check
//! every request the device sends: the body, the SAS token (signed in the TPM with the key of the first blob),
//! the SASL frames byte by byte. Afterwards the TPM must sign with the key of the second blob (§4.4.3 step 4).
//! The end-to-end flows against the service itself live with the service's tests.
#![cfg(feature = "tpm")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use dps_crypto::tpm::{self as ctpm, RsaPublic};
use dps_crypto::SasToken;
use dps_device::flow::Flow;
use dps_device::swtpm::Swtpm;
use dps_device::tpm_amqp::{read_frame, sasl_tpm, write_frame, SASL_HEADER};
use dps_device::tpm_worker::TpmWorker;
use dps_device::{Endpoint, HttpsDevice, Polling};
use dps_proto::amqp::{parse_tpm_init, tpm_blob_challenges};
use dps_proto::RegistrationStatus;
use fe2o3_amqp::frames::sasl::Frame;
use fe2o3_amqp::types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslChallenge, SaslCode, SaslMechanisms, SaslOutcome};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rand::RngCore;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;

const ID_SCOPE: &str = "0ne0001A2B3";

fn swtpm() -> Swtpm {
    Swtpm::start().expect("start")
}

async fn worker(tpm: &Swtpm) -> TpmWorker {
    TpmWorker::open(Some(tpm.tcti())).await.expect("opens")
}

fn random_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    k
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// What the service would send this device to carry `key` (§4.4.5).
fn blob_for(ek: &[u8], srk: &[u8], key: &[u8]) -> Vec<u8> {
    let ek = RsaPublic::from_tpm2b(ek).expect("EK public area");
    let srk = RsaPublic::from_tpm2b(srk).expect("SRK public area");
    ctpm::build_authentication_key(&ek, &srk, key, b"hub.example.net").expect("blob")
}

/// The TPM now signs with `key` (the identity key was replaced by the last activation).
async fn assert_signs_with(tpm: &TpmWorker, key: &[u8], what: &str) {
    let data = b"hub.example.net/devices/dev1\n1735689600".to_vec();
    let mac = tpm.sign(data.clone()).await.expect("TPM2_HMAC");
    assert_eq!(mac, hmac_sha256(key, &data), "the TPM does not hold {what}");
}

/// A SAS token of a TPM device: signed with `key` for `{ID_SCOPE}/registrations/{id}`, `sr` as the C SDK
/// encodes it (`%2f`), with `skn` = `key_name`.
fn check_sas(token: &str, key: &[u8], id: &str, key_name: &str) -> Result<(), String> {
    let t = SasToken::parse(token).map_err(|e| format!("{e}: {token}"))?;
    let sr = token.split("sr=").nth(1).and_then(|r| r.split('&').next()).unwrap_or_default();
    if !sr.contains("%2fregistrations%2f") {
        return Err(format!("sr is not encoded as the C SDK does: {sr}"));
    }
    if t.resource().ok().as_deref() != Some(&format!("{ID_SCOPE}/registrations/{id}")) {
        return Err(format!("wrong sr: {token}"));
    }
    if t.key_name() != Some(key_name) {
        return Err(format!("skn is not {key_name}: {token}"));
    }
    if !t.verify(key) {
        return Err(format!("the signature does not verify with the challenge's key: {token}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// HTTPS (§1.10 TPM): a stand-in for the device API.

#[derive(Default)]
struct DeviceApi {
    ek: Vec<u8>,
    srk: Vec<u8>,
    k1: Vec<u8>,
    k2: Vec<u8>,
    /// Refuse the unauthenticated register as an EK without enrollment is refused (401 with an error body).
    unknown_ek: bool,
    polls: usize,
    problems: Vec<String>,
    calls: Vec<String>,
}

fn tls_material() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.distinguished_name.push(DnType::CommonName, "DPS stand-in CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    (ca.pem(), config)
}

/// Starts the stand-in; returns the device's endpoint for it.
async fn start_device_api(state: Arc<Mutex<DeviceApi>>) -> (Endpoint, tokio::task::JoinHandle<()>) {
    let (ca_pem, config) = tls_material();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });
    (Endpoint { host: addr.to_string(), id_scope: ID_SCOPE.into(), ca_pem: ca_pem.into_bytes() }, server)
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json; charset=utf-8"));
    r.headers_mut().insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    r
}

fn error(status: u16, code: u32, message: &str) -> Response<Full<Bytes>> {
    reply(status, json!({ "errorCode": code, "trackingId": "t", "message": message, "timestampUtc": "2025-01-01T00:00:00Z" }))
}

async fn handle(state: &Mutex<DeviceApi>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (method, path, query) = (req.method().to_string(), req.uri().path().to_owned(), req.uri().query().unwrap_or_default().to_owned());
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.calls.push(format!("{method} {path} auth={}", authorization.is_some()));
    let id = ctpm::registration_id(&s.ek);
    let base = format!("/{ID_SCOPE}/registrations/{id}");
    if query != "api-version=2021-06-01" {
        s.problems.push(format!("{method} {path}: query {query}"));
    }
    match (method.as_str(), authorization) {
        ("PUT", auth) if path == format!("{base}/register") => {
            // §1.4: the same body both times, with both public areas.
            let body: Value = serde_json::from_slice(&bytes).expect("parses");
            let want =
                json!({ "registrationId": id, "tpm": { "endorsementKey": B64.encode(&s.ek), "storageRootKey": B64.encode(&s.srk) } });
            if body != want {
                s.problems.push(format!("register body {body}"));
            }
            match auth {
                None if s.unknown_ek => error(401, 401002, "Unauthorized"),
                None => {
                    let blob = blob_for(&s.ek, &s.srk, &s.k1);
                    reply(401, json!({ "message": "Unauthorized", "authenticationKey": B64.encode(blob), "keyName": "dpsTpmKey" }))
                }
                Some(token) => match check_sas(&token, &s.k1, &id, "dpsTpmKey") {
                    Ok(()) => reply(202, json!({ "operationId": "5.op-1", "status": "assigning" })),
                    Err(e) => {
                        s.problems.push(e);
                        error(401, 401002, "Unauthorized")
                    }
                },
            }
        }
        ("GET", Some(token)) if path == format!("{base}/operations/5.op-1") => {
            if let Err(e) = check_sas(&token, &s.k1, &id, "dpsTpmKey") {
                s.problems.push(e);
                return error(401, 401002, "Unauthorized");
            }
            s.polls += 1;
            if s.polls < 2 {
                return reply(202, json!({ "operationId": "5.op-1", "status": "assigning" }));
            }
            let blob = blob_for(&s.ek, &s.srk, &s.k2);
            reply(
                200,
                json!({ "operationId": "5.op-1", "status": "assigned", "registrationState": {
                    "registrationId": id, "assignedHub": "hub.example.net", "deviceId": id, "status": "assigned",
                    "substatus": "initialAssignment", "tpm": { "authenticationKey": B64.encode(blob) } } }),
            )
        }
        _ => {
            s.problems.push(format!("unexpected {method} {path}"));
            error(404, 404000, "no route")
        }
    }
}

// §1.10 TPM: unauthenticated PUT → 401 challenge → K1 activated → SAS (skn = keyName) → 202 → poll → assigned
// → K2 activated.
#[tokio::test]
async fn https_registration_activates_the_challenge_then_the_hub_key() {
    let swtpm = swtpm();
    let tpm = worker(&swtpm).await;
    let (k1, k2) = (random_key(), random_key());
    let state = Arc::new(Mutex::new(DeviceApi {
        ek: tpm.endorsement_key().to_vec(),
        srk: tpm.storage_root_key().to_vec(),
        k1,
        k2: k2.clone(),
        ..Default::default()
    }));
    let (endpoint, server) = start_device_api(Arc::clone(&state)).await;
    let device = HttpsDevice::new(endpoint, Polling::Every(Duration::from_millis(20))).expect("client");
    let status = device.provision_tpm(&tpm, None).await.expect("provision tpm");
    server.abort();
    {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        assert!(s.problems.is_empty(), "{:#?}\ncalls: {:#?}", s.problems, s.calls);
        let methods: Vec<&str> = s.calls.iter().map(|c| c.split_once(' ').map_or(c.as_str(), |(m, _)| m)).collect();
        assert_eq!(methods, ["PUT", "PUT", "GET", "GET"], "{:#?}", s.calls);
    }
    assert_eq!(status.status, RegistrationStatus::Assigned);
    assert_signs_with(&tpm, &k2, "the IoT hub key (the second blob)").await;
}

// §1.10: a 401 without a challenge (no enrollment for this EK) is an error that says so.
#[tokio::test]
async fn https_refusal_of_the_ek_is_an_error_with_its_code() {
    let swtpm = swtpm();
    let tpm = worker(&swtpm).await;
    let state = Arc::new(Mutex::new(DeviceApi {
        ek: tpm.endorsement_key().to_vec(),
        srk: tpm.storage_root_key().to_vec(),
        unknown_ek: true,
        ..Default::default()
    }));
    let (endpoint, server) = start_device_api(Arc::clone(&state)).await;
    let device = HttpsDevice::new(endpoint, Polling::Every(Duration::from_millis(20))).expect("client");
    let err = device.provision_tpm(&tpm, None).await.expect_err("refused");
    server.abort();
    let refused = err.downcast_ref::<dps_device::Refused>().unwrap_or_else(|| panic!("a refusal with its code: {err:#}"));
    assert_eq!(refused.code, 401002, "{err:#}");
}

// ---------------------------------------------------------------------------------------------------------
// AMQP (§3.3): the server's half of the `TPM` SASL mechanism, over an in-memory stream.

async fn server_frame(stream: &mut DuplexStream) -> Frame {
    read_frame(stream).await.expect("read frame")
}

async fn send(stream: &mut DuplexStream, frame: Frame) {
    write_frame(stream, frame).await.expect("write frame");
}

fn response_bytes(frame: Frame) -> Vec<u8> {
    match frame {
        Frame::Response(r) => r.response.into_vec(),
        other => panic!("expected a sasl-response, got {other:?}"),
    }
}

async fn challenge(stream: &mut DuplexStream, bytes: Vec<u8>) {
    send(stream, Frame::Challenge(SaslChallenge { challenge: Binary::from(bytes) })).await;
}

async fn outcome(stream: &mut DuplexStream, code: SaslCode) {
    send(stream, Frame::Outcome(SaslOutcome { code, additional_data: None })).await;
}

/// Headers and mechanisms, then the init frame checked against §3.3 frame 1.
async fn server_start(stream: &mut DuplexStream, ek: &[u8], id: &str, mechanisms: &[&str]) {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.expect("header");
    assert_eq!(header, SASL_HEADER, "the client's SASL header");
    stream.write_all(&SASL_HEADER).await.expect("header");
    let offered = mechanisms.iter().map(|m| Symbol::from(*m)).collect::<Vec<_>>();
    send(stream, Frame::Mechanisms(SaslMechanisms { sasl_server_mechanisms: Array::from(offered) })).await;
    if !mechanisms.contains(&"TPM") {
        return;
    }
    let Frame::Init(init) = server_frame(stream).await else { panic!("expected sasl-init") };
    assert_eq!(init.mechanism.as_str(), "TPM");
    let payload = init.initial_response.expect("initial response").into_vec();
    let parsed = parse_tpm_init(&payload).expect("0x00 idScope 0x00 registrationId 0x00 EK");
    assert_eq!((parsed.identity.id_scope.as_str(), parsed.identity.registration_id.as_str()), (ID_SCOPE, id));
    assert_eq!(parsed.endorsement_key, ek, "the raw EK TPM2B_PUBLIC");
}

// §3.3 frames 1–8, then the TPM holds K1.
#[tokio::test]
async fn amqp_tpm_sasl_exchange_frame_by_frame() {
    let swtpm = swtpm();
    let tpm = worker(&swtpm).await;
    let (ek, srk, id) = (tpm.endorsement_key().to_vec(), tpm.storage_root_key().to_vec(), tpm.registration_id().to_owned());
    let k1 = random_key();
    let (mut client, mut server) = tokio::io::duplex(4096);
    let key = k1.clone();
    let service = tokio::spawn(async move {
        server_start(&mut server, &ek, &id, &["TPM", "PLAIN"]).await;
        challenge(&mut server, vec![0]).await;
        assert_eq!(response_bytes(server_frame(&mut server).await), [&[0u8][..], &srk].concat(), "0x00 ‖ SRK");
        let [first, second] = tpm_blob_challenges(&blob_for(&ek, &srk, &key)).expect("two segments");
        challenge(&mut server, first).await;
        assert_eq!(response_bytes(server_frame(&mut server).await), [0u8], "the first segment's acknowledgement");
        challenge(&mut server, second).await;
        let response = response_bytes(server_frame(&mut server).await);
        let (control, token) = response.split_first().expect("a response");
        assert_eq!(*control, 0);
        check_sas(std::str::from_utf8(token).expect("UTF-8"), &key, &id, "registration").expect("check sas");
        outcome(&mut server, SaslCode::Ok).await;
        // Nothing more is read from the stream: the AMQP header comes next.
        server
    });
    let id = tpm.registration_id().to_owned();
    sasl_tpm(&mut client, &tpm, (ID_SCOPE, &id), &Flow::default()).await.expect("sasl tpm");
    let mut server = service.await.expect("server");
    drop(client);
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.expect("read");
    assert!(rest.is_empty(), "the client sent {} bytes after the outcome", rest.len());
    assert_signs_with(&tpm, &k1, "the key of the SASL challenges").await;
}

// §3.3 frame 8: `auth` in place of the blob (no enrollment for this EK) is an error that names it.
#[tokio::test]
async fn amqp_refusal_is_an_error_with_the_outcome() {
    let swtpm = swtpm();
    let tpm = worker(&swtpm).await;
    let (ek, id) = (tpm.endorsement_key().to_vec(), tpm.registration_id().to_owned());
    let (mut client, mut server) = tokio::io::duplex(4096);
    let service = tokio::spawn(async move {
        server_start(&mut server, &ek, &id, &["TPM", "PLAIN"]).await;
        challenge(&mut server, vec![0]).await;
        let _ = server_frame(&mut server).await;
        outcome(&mut server, SaslCode::Auth).await;
    });
    let err = sasl_tpm(&mut client, &tpm, (ID_SCOPE, tpm.registration_id()), &Flow::default()).await.expect_err("refused");
    service.await.expect("server");
    assert!(format!("{err:#}").contains("SASL outcome auth (1)"), "{err:#}");
}

// §3.1: a server that does not offer TPM.
#[tokio::test]
async fn amqp_without_the_tpm_mechanism_is_an_error() {
    let swtpm = swtpm();
    let tpm = worker(&swtpm).await;
    let (ek, id) = (tpm.endorsement_key().to_vec(), tpm.registration_id().to_owned());
    let (mut client, mut server) = tokio::io::duplex(4096);
    let service = tokio::spawn(async move { server_start(&mut server, &ek, &id, &["PLAIN"]).await });
    let err = sasl_tpm(&mut client, &tpm, (ID_SCOPE, tpm.registration_id()), &Flow::default()).await.expect_err("refused");
    service.await.expect("server");
    assert!(format!("{err:#}").contains("does not offer the TPM SASL mechanism (offers PLAIN)"), "{err:#}");
}
