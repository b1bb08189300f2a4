//! The `azureIotHub` connector against a local TLS stand-in of IoT Hub's service REST API (§7.4).
//!
//! The stand-in checks what IoT Hub checks and what the connector promises: the SAS (audience = the
//! connection string's HostName, signed with the policy key, `skn`, one-hour expiry from the injected
//! clock), api-version, paths with percent-encoded device ids, `If-Match` headers and the exact JSON body
//! shapes. It records every call; failures can be injected (503s, a 401, a failing twin update).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::TimeZone;
use dps_core::clock::ManualClock;
use dps_core::model::EnrollmentRef;
use dps_core::ports::{ConnectorError, DeviceRegistryStore, HubAuthentication, HubConnector, HubDevice, IdentityOwner, StoreResult};
use dps_core::Clock;
use dps_crypto::{SasToken, Secret};
use dps_hub::{AzureIotHub, Connectors};
use dps_proto::{DeviceIdentity, InitialTwin, InitialTwinProperties, LinkedHub};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const HUB: &str = "myhub.azure-devices.net";
const POLICY: &str = "iothubowner";
/// The policy key (base64 of 32 bytes).
const POLICY_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PRIMARY: &str = "cHJpbWFyeS1rZXktb2YtdGhlLWRldmljZS0wMTIzNDU=";
const SECONDARY: &str = "c2Vjb25kYXJ5LWtleS1vZi10aGUtZGV2aWNlLTAxMjM=";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The path as sent (still percent-encoded).
    path: String,
    if_match: Option<String>,
    body: Option<Value>,
}

#[derive(Default)]
struct HubState {
    /// device id → (device JSON, etag).
    devices: HashMap<String, (Value, u32)>,
    twins: HashMap<String, Value>,
    calls: Vec<Seen>,
    /// Everything the connector got wrong; every test asserts it stays empty.
    problems: Vec<String>,
    /// The next n requests answer 503.
    fail_503: u32,
    /// `PATCH /twins` answers this status.
    fail_twin: Option<u16>,
    /// Every request answers 401.
    refuse: bool,
    etags: u32,
}

/// The stand-in: a TLS server on 127.0.0.1 whose certificate chains to `ca_pem`. Dropping it stops
/// the accept loop and every connection (the JoinSet aborts its tasks when dropped).
struct StandIn {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<HubState>>,
    expected_expiry: u64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn tls_material() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("generates a key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
    ca_params.distinguished_name.push(DnType::CommonName, "IoT Hub stand-in CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("self-signs");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("generates a key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("constructs");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("signs");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("with safe default protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("with single cert");
    (ca.pem(), config)
}

impl StandIn {
    async fn start(clock: &ManualClock) -> Self {
        let (ca_pem, config) = tls_material();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(HubState::default()));
        let expected_expiry = u64::try_from(clock.now().timestamp() + 3600).expect("converts");
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&shared));
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, expected_expiry, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                });
            }
        });
        Self { addr, ca_pem, state, expected_expiry, server }
    }

    fn hub(&self) -> LinkedHub {
        LinkedHub {
            host_name: HUB.into(),
            connector: "azureIotHub".into(),
            connection_string: Some(format!(
                "HostName={HUB};SharedAccessKeyName={POLICY};SharedAccessKey={POLICY_KEY};GatewayHostName={}",
                self.addr
            )),
            ca_certificate: Some(self.ca_pem.clone()),
            ..LinkedHub::default()
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `METHOD path` of every call so far.
    fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.iter().map(|c| format!("{} {}", c.method, c.path)).collect())
    }

    fn call(&self, i: usize) -> Seen {
        self.with(|s| s.calls[i].clone())
    }

    fn assert_no_problems(&self) {
        let problems = self.with(|s| s.problems.clone());
        assert!(problems.is_empty(), "the connector broke IoT Hub's rules: {problems:#?}");
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(if body.is_null() { Vec::new() } else { body.to_string().into_bytes() })));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

fn hub_error(status: u16, code: &str, text: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({ "Message": format!("ErrorCode:{code};{text}"), "ExceptionMessage": "Tracking ID:0000-G:0-TimeStamp:01/02/2026 03:04:05" }),
    )
}

/// Whether `v` is an object with exactly these keys.
fn keys_are(v: &Value, keys: &[&str]) -> bool {
    v.as_object().is_some_and(|o| o.len() == keys.len() && keys.iter().all(|k| o.contains_key(*k)))
}

fn check_device_body(id: &str, body: &Value) -> Result<(), String> {
    if !keys_are(body, &["deviceId", "status", "authentication", "capabilities"]) {
        return Err(format!("device body has other members: {body}"));
    }
    if body["deviceId"] != id || body["status"] != "enabled" {
        return Err(format!("device body: deviceId / status wrong: {body}"));
    }
    if !keys_are(&body["capabilities"], &["iotEdge"]) || !body["capabilities"]["iotEdge"].is_boolean() {
        return Err(format!("device body: capabilities wrong: {body}"));
    }
    let auth = &body["authentication"];
    let ok = match auth["type"].as_str() {
        Some("sas") => {
            keys_are(auth, &["type", "symmetricKey"])
                && keys_are(&auth["symmetricKey"], &["primaryKey", "secondaryKey"])
                && auth["symmetricKey"]["primaryKey"].is_string()
                && auth["symmetricKey"]["secondaryKey"].is_string()
        }
        Some("selfSigned") => {
            keys_are(auth, &["type", "x509Thumbprint"])
                && keys_are(&auth["x509Thumbprint"], &["primaryThumbprint", "secondaryThumbprint"])
                && auth["x509Thumbprint"]["primaryThumbprint"].is_string()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("device body: authentication wrong: {body}"))
    }
}

async fn handle(state: &Mutex<HubState>, expected_expiry: u64, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (if_match, authorization, content_type) = (header("if-match"), header("authorization"), header("content-type"));
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(400, Value::Null),
    };
    let body = if bytes.is_empty() { None } else { serde_json::from_slice::<Value>(&bytes).ok() };
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.calls.push(Seen { method: method.clone(), path: path.clone(), if_match: if_match.clone(), body: body.clone() });

    if s.refuse {
        return hub_error(401, "IotHubUnauthorizedAccess", "Unauthorized");
    }
    if s.fail_503 > 0 {
        s.fail_503 -= 1;
        return hub_error(503, "ServerBusy", "The service is busy");
    }
    if query != "api-version=2021-04-12" {
        s.problems.push(format!("{method} {path}: query '{query}'"));
        return hub_error(400, "InvalidProtocolVersion", "bad api-version");
    }
    let sas_ok = authorization.as_deref().and_then(|a| SasToken::parse(a).ok()).is_some_and(|t| {
        let key = dps_crypto::decode_key(POLICY_KEY).expect("decodes the key");
        t.resource().ok().as_deref() == Some(HUB) && t.key_name() == Some(POLICY) && t.verify(&key) && t.expiry() == expected_expiry
    });
    if !sas_ok {
        s.problems.push(format!("{method} {path}: SAS not accepted: {authorization:?}"));
        return hub_error(401, "IotHubUnauthorizedAccess", "Unauthorized");
    }
    if body.is_some() && content_type.as_deref().is_none_or(|c| !c.starts_with("application/json")) {
        s.problems.push(format!("{method} {path}: content-type {content_type:?}"));
    }
    let (collection, id) = match path.trim_start_matches('/').split_once('/') {
        Some((c, raw)) if !raw.contains('/') => (c.to_owned(), percent_decode_str(raw).decode_utf8_lossy().into_owned()),
        _ => {
            s.problems.push(format!("{method} {path}: not /devices/{{id}} or /twins/{{id}}"));
            return hub_error(404, "NotFound", "no such route");
        }
    };
    match (method.as_str(), collection.as_str()) {
        ("GET", "devices") => {
            if if_match.is_some() {
                s.problems.push(format!("GET {path}: If-Match {if_match:?}"));
            }
            match s.devices.get(&id) {
                Some((d, etag)) => {
                    let mut d = d.clone();
                    d["etag"] = json!(format!("etag-{etag}"));
                    reply(200, d)
                }
                None => hub_error(404, "DeviceNotFound", &format!("Device {id} not registered")),
            }
        }
        ("PUT", "devices") => {
            let Some(body) = body else {
                s.problems.push(format!("PUT {path}: no JSON body"));
                return hub_error(400, "ArgumentInvalid", "no body");
            };
            if let Err(e) = check_device_body(&id, &body) {
                s.problems.push(e);
                return hub_error(400, "ArgumentInvalid", "bad device");
            }
            match (s.devices.get(&id).map(|(_, e)| *e), if_match.as_deref()) {
                (Some(etag), Some(m)) if m == format!("\"etag-{etag}\"") || m == "*" => {}
                (Some(_), Some(_)) => return hub_error(412, "PreconditionFailed", "etag mismatch"),
                (Some(_), None) => return hub_error(409, "DeviceAlreadyExists", &format!("A device with ID '{id}' is already registered")),
                (None, None) => {}
                (None, Some(m)) => s.problems.push(format!("PUT {path}: If-Match {m} for a new device")),
            }
            s.etags += 1;
            let etag = s.etags;
            s.devices.insert(id, (body.clone(), etag));
            let mut d = body;
            d["etag"] = json!(format!("etag-{etag}"));
            reply(200, d)
        }
        ("PATCH", "twins") => {
            if if_match.as_deref() != Some("*") {
                s.problems.push(format!("PATCH {path}: If-Match {if_match:?}"));
            }
            let Some(body) = body.filter(|b| keys_are(b, &["tags", "properties"]) && keys_are(&b["properties"], &["desired"])) else {
                s.problems.push(format!("PATCH {path}: body is not {{tags, properties: {{desired}}}}"));
                return hub_error(400, "ArgumentInvalid", "bad twin");
            };
            if let Some(code) = s.fail_twin {
                return hub_error(code, "ArgumentInvalid", "twin update refused by the test");
            }
            if !s.devices.contains_key(&id) {
                return hub_error(404, "DeviceNotFound", "no device");
            }
            // IoT Hub merges a patch into the twin (tags and desired properties, member by member).
            let mut twin = s.twins.get(&id).cloned().unwrap_or_else(|| json!({ "tags": {}, "properties": { "desired": {} } }));
            for (at, from) in [("/tags", "/tags"), ("/properties/desired", "/properties/desired")] {
                if let (Some(to), Some(patch)) =
                    (twin.pointer_mut(at).and_then(Value::as_object_mut), body.pointer(from).and_then(Value::as_object))
                {
                    to.extend(patch.clone());
                }
            }
            s.twins.insert(id, twin.clone());
            reply(200, twin)
        }
        ("GET", "twins") => match (s.devices.contains_key(&id), s.twins.get(&id)) {
            (false, _) => hub_error(404, "DeviceNotFound", "no device"),
            (true, twin) => {
                let twin = twin.cloned().unwrap_or_else(|| json!({ "tags": {}, "properties": { "desired": {} } }));
                let mut desired = twin["properties"]["desired"].clone();
                desired["$metadata"] = json!({ "$lastUpdated": "2026-01-02T03:04:05Z" });
                desired["$version"] = json!(2);
                reply(
                    200,
                    json!({ "deviceId": id, "etag": "AAAA", "tags": twin["tags"], "properties": { "desired": desired, "reported": {} } }),
                )
            }
        },
        ("DELETE", "devices") => {
            if if_match.as_deref() != Some("*") {
                s.problems.push(format!("DELETE {path}: If-Match {if_match:?}"));
            }
            s.twins.remove(&id);
            match s.devices.remove(&id) {
                Some(_) => reply(204, Value::Null),
                None => hub_error(404, "DeviceNotFound", "no device"),
            }
        }
        _ => {
            s.problems.push(format!("{method} {path}: not an IoT Hub call the connector should make"));
            hub_error(405, "MethodNotAllowed", "no")
        }
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap_or_else(|| panic!("a valid time"))))
}

/// An owner of this test's DPS instance: the enrollment group `group`.
fn owner(group: &str) -> IdentityOwner {
    IdentityOwner { id_scope: "0ne00000001".into(), enrollment: EnrollmentRef::Group(group.into()) }
}

fn sas_device(id: &str, twin: Option<InitialTwin>) -> HubDevice {
    HubDevice {
        device_id: id.into(),
        registration_id: id.into(),
        authentication: HubAuthentication::Sas { primary_key: Secret::new(PRIMARY), secondary_key: Secret::new(SECONDARY) },
        iot_edge: false,
        initial_twin: twin,
        owner: owner("fleet"),
        replaces: None,
    }
}

const MARKER: &str = "dps-console:0ne00000001:group:fleet";

fn twin() -> InitialTwin {
    let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
    InitialTwin {
        tags: Some(obj(json!({ "site": "north", "line": 4 }))),
        properties: Some(InitialTwinProperties { desired: Some(obj(json!({ "interval": 30, "mode": { "eco": true } }))) }),
    }
}

#[tokio::test]
async fn a_new_sas_device_with_a_twin_is_put_then_its_twin_patched() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    c.check(&hub.hub()).expect("check");
    c.provision(&hub.hub(), &sas_device("dev:01%x", Some(twin()))).await.expect("provision");

    hub.assert_no_problems();
    assert_eq!(hub.calls(), ["GET /devices/dev%3A01%25x", "PUT /devices/dev%3A01%25x", "PATCH /twins/dev%3A01%25x"]);
    let put = hub.call(1);
    assert_eq!(put.if_match, None, "a new device is created without If-Match");
    assert_eq!(
        put.body,
        Some(json!({
            "deviceId": "dev:01%x",
            "status": "enabled",
            "authentication": { "type": "sas", "symmetricKey": { "primaryKey": PRIMARY, "secondaryKey": SECONDARY } },
            "capabilities": { "iotEdge": false },
        }))
    );
    let patch = hub.call(2);
    assert_eq!(patch.if_match.as_deref(), Some("*"));
    assert_eq!(
        patch.body,
        Some(json!({
            "tags": { "site": "north", "line": 4, "dpsConsoleOwner": MARKER },
            "properties": { "desired": { "interval": 30, "mode": { "eco": true } } },
        }))
    );

    // The twin can be read back to migrate it (§7.3), without IoT Hub's $metadata / $version.
    let read = c.read_twin(&hub.hub(), "dev:01%x").await.expect("read twin");
    assert_eq!(read, Some(twin()));
    assert_eq!(c.read_twin(&hub.hub(), "nobody").await.expect("read twin"), None);
    hub.assert_no_problems();
}

#[tokio::test]
async fn an_existing_device_is_replaced_with_its_etag_and_keeps_its_twin_without_one() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    c.provision(&hub.hub(), &sas_device("dev-1", None)).await.expect("provision");
    let mut edge = sas_device("dev-1", None);
    edge.iot_edge = true;
    c.provision(&hub.hub(), &edge).await.expect("provision");

    hub.assert_no_problems();
    // No twin given: the PATCH carries the owner tag only (the hub's twin is kept); the owner is read back first.
    assert_eq!(
        hub.calls(),
        [
            "GET /devices/dev-1",
            "PUT /devices/dev-1",
            "PATCH /twins/dev-1",
            "GET /devices/dev-1",
            "GET /twins/dev-1",
            "PUT /devices/dev-1",
            "PATCH /twins/dev-1"
        ]
    );
    assert_eq!(hub.call(2).body, Some(json!({ "tags": { "dpsConsoleOwner": MARKER }, "properties": { "desired": {} } })));
    let second = hub.call(5);
    assert_eq!(second.if_match.as_deref(), Some("\"etag-1\""));
    assert_eq!(second.body.as_ref().map(|b| b["capabilities"].clone()), Some(json!({ "iotEdge": true })));
}

#[tokio::test]
async fn an_x509_device_gets_self_signed_thumbprints() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    let thumb = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let device = HubDevice {
        device_id: "x509-dev".into(),
        registration_id: "x509-dev".into(),
        authentication: HubAuthentication::SelfSigned { primary_thumbprint: thumb.into(), secondary_thumbprint: thumb.into() },
        iot_edge: false,
        initial_twin: None,
        owner: owner("fleet"),
        replaces: None,
    };
    c.provision(&hub.hub(), &device).await.expect("provision");
    hub.assert_no_problems();
    assert_eq!(
        hub.call(1).body,
        Some(json!({
            "deviceId": "x509-dev",
            "status": "enabled",
            "authentication": { "type": "selfSigned", "x509Thumbprint": { "primaryThumbprint": thumb, "secondaryThumbprint": thumb } },
            "capabilities": { "iotEdge": false },
        }))
    );
}

#[tokio::test]
async fn a_failing_twin_update_deletes_the_new_identity_and_fails() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    hub.with(|s| s.fail_twin = Some(400));
    let e = c.provision(&hub.hub(), &sas_device("dev-t", Some(twin()))).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Refused(m) if m.contains("twin update") && m.contains("400")), "{e}");
    hub.assert_no_problems();
    assert_eq!(hub.calls(), ["GET /devices/dev-t", "PUT /devices/dev-t", "PATCH /twins/dev-t", "DELETE /devices/dev-t"]);
    assert_eq!(hub.call(3).if_match.as_deref(), Some("*"));
    assert!(hub.with(|s| s.devices.is_empty()), "no half-created identity is left");
    hub.with(|s| s.calls.clear());

    // An identity that existed before is not deleted for a failed twin update.
    hub.with(|s| s.fail_twin = None);
    c.provision(&hub.hub(), &sas_device("dev-t", None)).await.expect("provision");
    hub.with(|s| s.fail_twin = Some(400));
    assert!(c.provision(&hub.hub(), &sas_device("dev-t", Some(twin()))).await.is_err());
    assert!(!hub.calls().iter().any(|c| c.starts_with("DELETE")), "{:?}", hub.calls());
    assert!(hub.with(|s| s.devices.contains_key("dev-t")));
}

#[tokio::test]
async fn busy_answers_are_retried() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    hub.with(|s| s.fail_503 = 2);
    c.provision(&hub.hub(), &sas_device("dev-r", None)).await.expect("provision");
    hub.assert_no_problems();
    assert_eq!(hub.calls(), ["GET /devices/dev-r", "GET /devices/dev-r", "GET /devices/dev-r", "PUT /devices/dev-r", "PATCH /twins/dev-r"]);

    // Busy for longer than the retries: Unavailable, with IoT Hub's message.
    hub.with(|s| s.fail_503 = 3);
    let e = c.provision(&hub.hub(), &sas_device("dev-r2", None)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Unavailable(m) if m.contains("503") && m.contains("ServerBusy")), "{e}");
}

#[tokio::test]
async fn a_hub_that_is_down_is_unavailable() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let mut linked = hub.hub();
    // A port nothing listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("and then").port();
    linked.connection_string =
        Some(format!("HostName={HUB};SharedAccessKeyName={POLICY};SharedAccessKey={POLICY_KEY};GatewayHostName=127.0.0.1:{port}"));
    let c = AzureIotHub::new(clock.clone());
    let e = c.provision(&linked, &sas_device("dev-d", None)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Unavailable(m) if m.contains("after 3 attempts")), "{e}");
    let e = c.deprovision(&linked, "dev-d").await.err().unwrap_or_else(|| panic!("deprovisioned"));
    assert!(matches!(e, ConnectorError::Unavailable(_)), "{e}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_not_ignored() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let mut linked = hub.hub();
    linked.ca_certificate = None;
    let e =
        AzureIotHub::new(clock.clone()).provision(&linked, &sas_device("dev-c", None)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Unavailable(m) if m.contains("certificate")), "{e}");
    assert!(hub.calls().is_empty());
}

#[tokio::test]
async fn a_401_is_refused_with_iot_hubs_message() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    hub.with(|s| s.refuse = true);
    let e = AzureIotHub::new(clock.clone())
        .provision(&hub.hub(), &sas_device("dev-u", None))
        .await
        .err()
        .unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Refused(m) if m.contains("401") && m.contains("IotHubUnauthorizedAccess")), "{e}");
    assert_eq!(hub.calls().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn deprovision_deletes_and_a_missing_device_is_already_gone() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    c.provision(&hub.hub(), &sas_device("dev-x", Some(twin()))).await.expect("provision");
    c.deprovision(&hub.hub(), "dev-x").await.expect("deprovision");
    c.deprovision(&hub.hub(), "dev-x").await.expect("deprovision");
    hub.assert_no_problems();
    assert_eq!(&hub.calls()[3..], ["DELETE /devices/dev-x", "DELETE /devices/dev-x"]);
    assert_eq!(hub.call(3).if_match.as_deref(), Some("*"));
    assert!(hub.with(|s| s.devices.is_empty()));
    // The stand-in checked the expiry against the injected clock: one hour ahead.
    assert_eq!(hub.expected_expiry, 1_767_323_045 + 3600);
}

/// The built-in registry is not under test here: a store that holds nothing.
struct NoRegistry;

#[async_trait]
impl DeviceRegistryStore for NoRegistry {
    async fn put_identity(&self, _: &DeviceIdentity, _: Option<(&Secret, &Secret)>) -> StoreResult<()> {
        Ok(())
    }
    async fn get_identity(&self, _: &str, _: &str) -> StoreResult<Option<DeviceIdentity>> {
        Ok(None)
    }
    async fn delete_identity(&self, _: &str, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn list_identities(&self, _: Option<&str>) -> StoreResult<Vec<DeviceIdentity>> {
        Ok(Vec::new())
    }
}

#[test]
fn check_refuses_unknown_connectors_and_malformed_credentials_without_echoing_secrets() {
    let connectors = Connectors::new(Arc::new(NoRegistry), clock());
    let hub = |connector: &str, cs: Option<&str>, ca: Option<&str>| LinkedHub {
        host_name: HUB.into(),
        connector: connector.into(),
        connection_string: cs.map(str::to_owned),
        ca_certificate: ca.map(str::to_owned),
        ..LinkedHub::default()
    };
    let refused = |h: LinkedHub| match connectors.check(&h) {
        Err(ConnectorError::Refused(m)) => m,
        other => panic!("{:?} accepted: {other:?}", h.connection_string),
    };

    assert!(connectors.check(&hub("builtin", None, None)).is_ok());
    let good = format!("HostName={HUB};SharedAccessKeyName={POLICY};SharedAccessKey={POLICY_KEY}");
    assert!(connectors.check(&hub("azureIotHub", Some(&good), None)).is_ok());
    assert!(connectors.check(&hub("mosquitto", Some("mqtt://admin:pw@127.0.0.1:1883"), None)).is_ok());

    assert_eq!(refused(hub("kafka", None, None)), "unknown hub connector 'kafka' (available: builtin, azureIotHub, mosquitto)");
    assert!(refused(hub("azureIotHub", None, None)).contains("needs a connectionString"));
    for (cs, expect) in [
        ("HostName=h.example;SharedAccessKeyName=p".to_owned(), "no SharedAccessKey"),
        (format!("SharedAccessKeyName={POLICY};SharedAccessKey={POLICY_KEY}"), "no HostName"),
        ("HostName=h;SharedAccessKeyName=p;SharedAccessKey=s3cr3t!!".to_owned(), "not a base64 key"),
        (format!("HostName={HUB};DeviceId=d;SharedAccessKey={POLICY_KEY}"), "device connection string"),
        (format!("{good};GatewayHostName=127.0.0.1:1/x"), "GatewayHostName"),
        ("garbage".to_owned(), "Name=value"),
    ] {
        let m = refused(hub("azureIotHub", Some(&cs), None));
        assert!(m.contains(expect), "{cs}: {m}");
        assert!(!m.contains("s3cr3t") && !m.contains(POLICY_KEY), "{m}");
    }
    assert!(refused(hub("azureIotHub", Some(&good), Some("not a certificate"))).contains("caCertificate"));
    let m = refused(hub("mosquitto", Some("mqtt://admin@127.0.0.1:1883"), None));
    assert!(m.contains("no password"), "{m}");
    let m = refused(hub("mosquitto", Some("mqtt://admin:s3cr3t@127.0.0.1:1883"), Some("-----BEGIN CERTIFICATE-----")));
    assert!(m.contains("mqtts") && !m.contains("s3cr3t"), "{m}");
}

/// Issue #14: an identity the connector did not create for this owner is never replaced — one made by hand (no
/// owner tag) or one of another enrollment — unless the engine names it as the owner to replace.
#[tokio::test]
async fn identities_of_other_owners_are_not_replaced() {
    let clock = clock();
    let hub = StandIn::start(&clock).await;
    let c = AzureIotHub::new(clock.clone());
    let by_hand =
        json!({ "deviceId": "manual", "status": "enabled", "authentication": { "type": "sas" }, "capabilities": { "iotEdge": false } });
    hub.with(|s| s.devices.insert("manual".into(), (by_hand.clone(), 7)));
    let e = c.provision(&hub.hub(), &sas_device("manual", Some(twin()))).await.expect_err("replaced a device made by hand");
    assert!(matches!(&e, ConnectorError::NotOwned { owner: None, message } if message.contains("not created by this service")), "{e}");
    assert_eq!(hub.calls(), ["GET /devices/manual", "GET /twins/manual"], "nothing is written");
    assert_eq!(hub.with(|s| s.devices.get("manual").map(|d| d.0.clone())), Some(by_hand));

    // Created for group `old`: another enrollment may not replace it…
    let old = HubDevice { owner: owner("old"), ..sas_device("dev-o", None) };
    c.provision(&hub.hub(), &old).await.expect("provision");
    let e = c.provision(&hub.hub(), &sas_device("dev-o", None)).await.expect_err("another enrollment took the identity over");
    assert!(matches!(&e, ConnectorError::NotOwned { owner: Some(o), .. } if *o == owner("old")), "{e}");
    // …unless the engine allows the take-over; the owner tag then names the new owner.
    let takeover = HubDevice { replaces: Some(owner("old")), ..sas_device("dev-o", None) };
    c.provision(&hub.hub(), &takeover).await.expect("provision");
    let tag = hub.with(|s| s.twins.get("dev-o").map(|t| t["tags"]["dpsConsoleOwner"].clone()));
    assert_eq!(tag, Some(json!(MARKER)));
    // Its twin migrates without the owner tag.
    let read = c.read_twin(&hub.hub(), "dev-o").await.expect("read twin");
    assert_eq!(read.and_then(|t| t.tags).map(|t| t.contains_key("dpsConsoleOwner")), Some(false));
    hub.assert_no_problems();
}
