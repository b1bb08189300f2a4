//! Issue #16 item 8: certificate issuance from a CSR (§1.4 `csr`, §1.5 `issuedCertificateChain`; device API
//! 2025-07-01-preview and 2026-04-01). Keys and requests are made by OpenSSL (an implementation independent of
//! the service's), sent by dps-device over HTTPS and MQTT, and the chains answered are checked by
//! `openssl verify` against the issuing CA: the local CA, and a CA uploaded with its key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::TestService;
use dps_device::amqp::AmqpSession;
use dps_device::carrier::Carrier;
use dps_device::flow::Flow;
use dps_device::mqtt::MqttSession;
use dps_device::{Endpoint, HttpsDevice, Polling, Registration};
use dps_proto::RegistrationOperationStatus;
use reqwest::Method;
use serde_json::{json, Value};

const FAST: Polling = Polling::Every(Duration::from_millis(50));

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A private key made by OpenSSL (`ec:P-256`, `ec:P-384`, `rsa:2048`…) in `dir/<name>.key` (PKCS#8 PEM).
fn key(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let file = format!("{name}.key");
    let (algorithm, option) = match kind.split_once(':') {
        Some(("ec", curve)) => ("EC", format!("ec_paramgen_curve:{curve}")),
        Some(("rsa", bits)) => ("RSA", format!("rsa_keygen_bits:{bits}")),
        _ => panic!("unknown key kind {kind}"),
    };
    openssl(dir, &["genpkey", "-algorithm", algorithm, "-pkeyopt", &option, "-out", &file]);
    dir.join(file)
}

/// A CSR for `cn` signed by `key`, base64 DER (what a device sends).
fn csr(dir: &Path, key: &Path, cn: &str) -> String {
    let der = openssl(dir, &["req", "-new", "-key", &key.to_string_lossy(), "-subj", &format!("/CN={cn}"), "-outform", "DER"]);
    B64.encode(der)
}

fn endpoint(s: &TestService) -> Endpoint {
    Endpoint { host: s.base.trim_start_matches("https://").to_owned(), id_scope: s.scope.clone(), ca_pem: s.ca_pem.clone() }
}

async fn over_https(s: &TestService, id: &str, device_key: &str, csr: &str) -> anyhow::Result<RegistrationOperationStatus> {
    let device = HttpsDevice::new(endpoint(s), FAST)?.registering(Registration { csr: Some(csr.to_owned()) });
    device.provision_symmetric_key(id, device_key).await
}

/// What a register over MQTT or AMQP starts from: the endpoint by address, TLS, the device's SAS token and the CSR.
fn sign_in(
    s: &TestService,
    id: &str,
    device_key: &str,
    csr: &str,
) -> anyhow::Result<(Endpoint, Arc<rustls::ClientConfig>, String, Registration)> {
    let ep = Endpoint { host: "127.0.0.1".into(), ..endpoint(s) };
    let sas = dps_device::device_sas(&ep.id_scope, id, device_key, Duration::from_secs(600))?;
    let tls = Arc::new(dps_device::tls_config(&ep.ca_pem)?);
    Ok((ep, tls, sas, Registration { csr: Some(csr.to_owned()) }))
}

async fn over_mqtt(s: &TestService, id: &str, device_key: &str, csr: &str) -> anyhow::Result<RegistrationOperationStatus> {
    let (ep, tls, sas, registration) = sign_in(s, id, device_key, csr)?;
    let mut session =
        MqttSession::connect_registering(&ep, Carrier::Port(s.mqtt_port), id, tls, Some(sas), Flow::default(), registration).await?;
    session.provision(id, FAST).await
}

async fn over_amqp(s: &TestService, id: &str, device_key: &str, csr: &str) -> anyhow::Result<RegistrationOperationStatus> {
    let (ep, tls, sas, registration) = sign_in(s, id, device_key, csr)?;
    let mut session =
        AmqpSession::connect_registering(&ep, Carrier::Port(s.amqp_port), id, tls, Some(sas), Flow::default(), registration).await?;
    session.provision(id, FAST).await
}

/// Writes the answered chain as PEM files: `leaf.pem` and `chain.pem` (everything after the leaf).
fn write_chain(dir: &Path, chain: &[String]) -> (PathBuf, PathBuf) {
    let pem = |b64: &String| format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    let (leaf, rest) = chain.split_first().expect("a chain with a leaf");
    let (leaf_path, chain_path) = (dir.join("leaf.pem"), dir.join("chain.pem"));
    std::fs::write(&leaf_path, pem(leaf)).expect("write leaf");
    std::fs::write(&chain_path, rest.iter().map(pem).collect::<String>()).expect("write chain");
    (leaf_path, chain_path)
}

/// What `openssl verify` says of the leaf against `ca` (the root), the chain's middle as untrusted.
fn verify(dir: &Path, ca: &Path, leaf: &Path, chain: &Path) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(ca)
        .arg("-untrusted")
        .arg(chain)
        .arg(leaf)
        .output()
        .expect("openssl verify runs");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The chain answered to an assigned device, checked by OpenSSL: valid under `ca`, for `id`, with `key`'s public key.
fn check_issued(dir: &Path, status: &RegistrationOperationStatus, id: &str, key: &Path, ca: &Path) -> Vec<String> {
    assert_eq!(status.status.as_str(), "assigned", "{status:?}");
    let chain = status.registration_state.as_ref().and_then(|r| r.issued_certificate_chain.clone()).expect("issuedCertificateChain");
    let (leaf, rest) = write_chain(dir, &chain);
    let said = verify(dir, ca, &leaf, &rest);
    assert!(said.trim_end().ends_with(": OK"), "openssl verify: {said}");
    let subject = String::from_utf8_lossy(&openssl(dir, &["x509", "-in", &leaf.to_string_lossy(), "-noout", "-subject"])).into_owned();
    assert!(subject.contains(&format!("CN = {id}")) || subject.contains(&format!("CN={id}")), "{subject}");
    let issued_key = openssl(dir, &["x509", "-in", &leaf.to_string_lossy(), "-noout", "-pubkey"]);
    let device_key = openssl(dir, &["pkey", "-in", &key.to_string_lossy(), "-pubout"]);
    assert_eq!(issued_key, device_key, "the certificate carries the key the CSR was signed with");
    chain
}

/// Whether `leaf.pem` expires within `days` (`openssl x509 -checkend`).
fn expires_within(dir: &Path, days: u64) -> bool {
    let seconds = (days * 86_400).to_string();
    let out = Command::new("openssl").current_dir(dir).args(["x509", "-in", "leaf.pem", "-noout", "-checkend", &seconds]).output();
    !out.expect("openssl x509 runs").status.success()
}

async fn put_policy(s: &TestService, name: &str, body: Value) -> common::Answer {
    s.service(Method::PUT, &format!("/credentialPolicies/{name}"), Some(body)).await
}

/// The local CA's file (what devices trust for TLS, and what signs under a `local` policy).
fn local_ca(s: &TestService, dir: &Path) -> PathBuf {
    let path = dir.join("local-ca.pem");
    std::fs::write(&path, &s.ca_pem).expect("write the local CA");
    path
}

#[tokio::test]
async fn a_csr_over_https_and_mqtt_gets_a_chain_openssl_verifies() {
    let s = TestService::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = put_policy(&s, "line-1", json!({ "validityDays": 7 })).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!((p.body["issuer"].as_str(), p.body["validityDays"].as_i64()), (Some("local"), Some(7)));
    assert!(p.body["issuerInfo"]["subjectName"].as_str().is_some_and(|n| n.contains("DPS Console local root CA")), "{}", p.body);
    let ca = local_ca(&s, d);

    // HTTPS, ECDSA P-256.
    let k = s.enroll("csr-https", json!({ "credentialPolicyName": "line-1" })).await;
    let device_key = key(d, "https", "ec:P-256");
    let status = over_https(&s, "csr-https", &k, &csr(d, &device_key, "csr-https")).await.expect("assigned over HTTPS");
    let chain = check_issued(d, &status, "csr-https", &device_key, &ca);
    assert_eq!(chain.len(), 2, "the device's certificate, then the local root CA");
    assert!(expires_within(d, 8) && !expires_within(d, 6), "validityDays 7");

    // MQTT, RSA 2048 (the test's clock moves on between registrations: the log orders by issuance time).
    s.clock.advance(chrono::Duration::seconds(1));
    let k = s.enroll("csr-mqtt", json!({ "credentialPolicyName": "line-1" })).await;
    let device_key = key(d, "mqtt", "rsa:2048");
    let status = over_mqtt(&s, "csr-mqtt", &k, &csr(d, &device_key, "csr-mqtt")).await.expect("assigned over MQTT");
    check_issued(d, &status, "csr-mqtt", &device_key, &ca);

    s.clock.advance(chrono::Duration::seconds(1));
    // AMQP, ECDSA P-384 (the api-version is the links' property, the CSR in the register message's body).
    let k_amqp = s.enroll("csr-amqp", json!({ "credentialPolicyName": "line-1" })).await;
    let device_key = key(d, "amqp", "ec:P-384");
    let status = over_amqp(&s, "csr-amqp", &k_amqp, &csr(d, &device_key, "csr-amqp")).await.expect("assigned over AMQP");
    check_issued(d, &status, "csr-amqp", &device_key, &ca);

    // The record and the issuance log know it; a status look-up does not repeat the chain.
    let record = s.service(Method::GET, "/registrations/csr-mqtt", None).await;
    let serial = record.body["issuedCertificate"]["info"]["serialNumber"].as_str().unwrap_or_default().to_owned();
    assert!(!serial.is_empty(), "{}", record.body);
    assert_eq!(record.body["issuedCertificate"]["keyType"], "rsa2048");
    let log = s.service(Method::GET, "/issuedCertificates", None).await;
    let listed: Vec<&str> =
        log.body.as_array().map(|a| a.iter().filter_map(|c| c["registrationId"].as_str()).collect()).unwrap_or_default();
    assert_eq!(listed, ["csr-amqp", "csr-mqtt", "csr-https"], "newest first: {}", log.body);
    let one = s.service(Method::GET, "/issuedCertificates?registrationId=CSR-MQTT", None).await;
    assert_eq!(one.body[0]["info"]["serialNumber"].as_str(), Some(serial.as_str()), "{}", one.body);
    let sas = s.device_sas("csr-mqtt", &k, s.now() + 600);
    let path = format!("/{}/registrations/csr-mqtt?api-version=2025-07-01-preview", s.scope);
    let lookup = s.send(Method::POST, &path, Some(&sas), &[], Some(br#"{"registrationId":"csr-mqtt"}"#.to_vec())).await;
    assert_eq!(lookup.status, 200, "{}", lookup.body);
    assert!(lookup.body.get("issuedCertificateChain").is_none(), "{}", lookup.body);
    let trace = s.service(Method::GET, "/registrations/csr-mqtt/trace", None).await;
    assert_eq!(trace.body["trace"]["certificate"]["serialNumber"].as_str(), Some(serial.as_str()), "{}", trace.body);

    // A device that registers again without a CSR keeps the record of its certificate; nothing new is issued.
    let again = s.provision("csr-mqtt", &k).await;
    assert_eq!(again.body["status"], "assigned");
    assert!(again.body["registrationState"].get("issuedCertificateChain").is_none());
    let record = s.service(Method::GET, "/registrations/csr-mqtt", None).await;
    assert_eq!(record.body["issuedCertificate"]["info"]["serialNumber"].as_str(), Some(serial.as_str()));
    assert_eq!(s.service(Method::GET, "/issuedCertificates", None).await.body.as_array().map(Vec::len), Some(3));
}

/// DPS code and message of a refused device call.
fn refusal(r: anyhow::Result<RegistrationOperationStatus>) -> (i64, String) {
    let e = r.expect_err("refused");
    let refused = e.chain().find_map(|c| c.downcast_ref::<dps_device::Refused>()).unwrap_or_else(|| panic!("not a refusal: {e:#}"));
    (refused.code, refused.message.clone())
}

#[tokio::test]
async fn bad_requests_and_missing_policies_are_refused_with_their_codes() {
    let s = TestService::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    assert_eq!(put_policy(&s, "ec-only", json!({ "keyTypes": ["ecP384"] })).await.status, 200);
    let k = s.enroll("dev-1", json!({ "credentialPolicyName": "ec-only" })).await;
    let p384 = key(d, "p384", "ec:P-384");
    let p256 = key(d, "p256", "ec:P-256");
    let rsa1024 = key(d, "rsa1024", "rsa:1024");
    let good = csr(d, &p384, "dev-1");
    let mut tampered = B64.decode(&good).expect("base64");
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let cases = [
        (csr(d, &p384, "someone-else"), "is not the registration id"),
        (B64.encode(&tampered), "signature does not verify"),
        (csr(d, &p256, "dev-1"), "allows ECDSA P-384"),
        (csr(d, &rsa1024, "dev-1"), "RSA key has 1024 bits"),
        ("not a csr".to_owned(), "not base64"),
    ];
    for (csr, says) in &cases {
        for (transport, answer) in [("https", over_https(&s, "dev-1", &k, csr).await), ("mqtt", over_mqtt(&s, "dev-1", &k, csr).await)] {
            let (code, message) = refusal(answer);
            assert_eq!(code, 400011, "{transport}: {message}");
            assert!(message.contains(says), "{transport}, expected {says}: {message}");
        }
    }
    assert_eq!(s.service(Method::GET, "/issuedCertificates", None).await.body, json!([]), "nothing was issued");

    // An enrollment without a policy, or naming one that does not exist: 400012.
    let k2 = s.enroll("dev-2", json!({})).await;
    let (code, message) = refusal(over_https(&s, "dev-2", &k2, &csr(d, &p384, "dev-2")).await);
    assert_eq!(code, 400012, "{message}");
    assert!(message.contains("names no credentialPolicyName"), "{message}");
    let k3 = s.enroll("dev-3", json!({ "credentialPolicyName": "gone" })).await;
    let (code, message) = refusal(over_mqtt(&s, "dev-3", &k3, &csr(d, &p384, "dev-3")).await);
    assert_eq!(code, 400012, "{message}");
    assert!(message.contains("does not exist"), "{message}");

    // A version before 2025-07-01-preview has no `csr`: refused with the HTTP status and code.
    let sas = s.device_sas("dev-1", &k, s.now() + 600);
    let body = json!({ "registrationId": "dev-1", "csr": good }).to_string();
    let a = s.register("dev-1", &sas, &body).await;
    TestService::assert_error(&a, 400, 400011);
    assert!(a.body["message"].as_str().is_some_and(|m| m.contains("2025-07-01-preview")), "{}", a.body);

    // An unauthenticated CSR is not read: the device is refused for its credentials first.
    let (code, _) = refusal(over_https(&s, "dev-1", "c3RyYW5nZXIta2V5LW9mLW5vYm9keS0wMTIzNDU2Nzg5", "not a csr").await);
    assert_eq!(code, 401002);

    // Right after the refusals, a good CSR is issued.
    let status = over_https(&s, "dev-1", &k, &good).await.expect("assigned");
    check_issued(d, &status, "dev-1", &p384, &local_ca(&s, d));
}

/// An uploaded issuing CA: an intermediate under a root, both made by OpenSSL.
fn uploaded_ca(d: &Path) -> (PathBuf, String, String) {
    key(d, "root", "ec:P-384");
    key(d, "issuing", "ec:P-256");
    let ext = d.join("ca.ext");
    std::fs::write(&ext, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n").expect("write ext");
    openssl(d, &["req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=Factory Root", "-days", "30", "-out", "root.pem"]);
    openssl(d, &["req", "-new", "-key", "issuing.key", "-subj", "/CN=Line Issuing CA", "-out", "issuing.csr"]);
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "issuing.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "20",
            "-extfile",
            "ca.ext",
            "-out",
            "issuing.pem",
        ],
    );
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(d.join("issuing.pem")).expect("issuing"),
        std::fs::read_to_string(d.join("root.pem")).expect("root")
    );
    (d.join("root.pem"), chain, std::fs::read_to_string(d.join("issuing.key")).expect("issuing key"))
}

#[tokio::test]
async fn an_uploaded_ca_issues_and_its_key_is_never_answered() {
    let s = TestService::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (root, chain, ca_key) = uploaded_ca(d);

    let without_key = put_policy(&s, "factory", json!({ "issuer": "uploaded", "certificate": chain })).await;
    TestService::assert_error(&without_key, 400, 400004);
    let other_key = std::fs::read_to_string(key(d, "other", "ec:P-256")).expect("other key");
    let wrong = put_policy(&s, "factory", json!({ "issuer": "uploaded", "certificate": chain, "privateKey": other_key })).await;
    assert!(wrong.body["message"].as_str().is_some_and(|m| m.contains("not the issuing CA certificate's key")), "{}", wrong.body);
    let p = put_policy(&s, "factory", json!({ "issuer": "uploaded", "certificate": chain, "privateKey": ca_key, "keyTypes": ["ecP256"] }))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.get("privateKey").is_none(), "{}", p.body);
    assert_eq!(p.body["issuerInfo"]["subjectName"], "CN=Line Issuing CA");
    let got = s.service(Method::GET, "/credentialPolicies/FACTORY", None).await;
    assert!(got.body.get("privateKey").is_none() && got.status == 200, "{}", got.body);
    // A change without the key keeps it (same certificate); the etag guards the write.
    let stale =
        s.send_json_if_match("/credentialPolicies/factory", json!({ "issuer": "uploaded", "certificate": chain }), "\"nope\"").await;
    TestService::assert_error(&stale, 412, 412002);
    let etag = got.body["etag"].as_str().unwrap_or_default().to_owned();
    let kept = s
        .send_json_if_match("/credentialPolicies/factory", json!({ "issuer": "uploaded", "certificate": chain, "validityDays": 3 }), &etag)
        .await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let sealed = std::fs::read(s.dir.path().join(dps_service::DATABASE_FILE)).expect("reads the file");
    let b64_line = ca_key.lines().nth(1).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&sealed).contains(b64_line), "the CA key is sealed at rest");

    let k = s.enroll("line-dev", json!({ "credentialPolicyName": "factory" })).await;
    let device_key = key(d, "device", "ec:P-256");
    let status = over_https(&s, "line-dev", &k, &csr(d, &device_key, "line-dev")).await.expect("assigned");
    let issued = check_issued(d, &status, "line-dev", &device_key, &root);
    assert_eq!(issued.len(), 3, "device, issuing CA, root");
    assert!(expires_within(d, 4) && !expires_within(d, 2), "validityDays 3");

    assert_eq!(s.service(Method::GET, "/credentialPolicies", None).await.body.as_array().map(Vec::len), Some(1));
    assert_eq!(s.service(Method::DELETE, "/credentialPolicies/factory", None).await.status, 204);
    TestService::assert_error(&s.service(Method::GET, "/credentialPolicies/factory", None).await, 404, 404204);
}

#[tokio::test]
async fn policy_documents_are_checked() {
    let s = TestService::start().await;
    for (name, body, says) in [
        ("bad name!", json!({}), "credential policy name"),
        ("p", json!({ "validityDays": 0 }), "validityDays"),
        ("p", json!({ "validityDays": 4000 }), "validityDays"),
        ("p", json!({ "keyTypes": [] }), "keyTypes"),
        ("p", json!({ "name": "q" }), "is not 'p' of the path"),
        ("p", json!({ "issuer": "local", "certificate": "x" }), "takes no certificate"),
        ("p", json!({ "issuer": "uploaded" }), "needs its certificate"),
    ] {
        let path = format!("/credentialPolicies/{}", name.replace(' ', "%20"));
        let a = s.service(Method::PUT, &path, Some(body)).await;
        TestService::assert_error(&a, 400, 400004);
        assert!(a.body["message"].as_str().is_some_and(|m| m.contains(says)), "{says}: {}", a.body);
    }
    let a = s.service(Method::PUT, "/credentialPolicies/p", Some(json!({ "keyTypes": ["dsa"] }))).await;
    assert_eq!(a.status, 400, "{}", a.body);
}

/// The X.509 lifecycle a credential policy serves: a device holding only its factory certificate registers with a
/// CSR and receives an operational certificate; it then registers with that certificate alone (over MQTT), in the
/// same group, whose secondary signing certificate is the operational CA's root.
#[tokio::test]
async fn a_factory_certificate_is_exchanged_for_an_operational_one_that_registers() {
    let s = TestService::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (operational_root, chain, ca_key) = uploaded_ca(d);
    key(d, "factory", "ec:P-256");
    openssl(d, &["req", "-x509", "-new", "-key", "factory.key", "-subj", "/CN=Factory CA", "-days", "30", "-out", "factory.pem"]);
    key(d, "boot", "ec:P-256");
    std::fs::write(d.join("leaf.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").expect("write ext");
    openssl(d, &["req", "-new", "-key", "boot.key", "-subj", "/CN=line-dev-7", "-out", "boot.csr"]);
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "boot.csr",
            "-CA",
            "factory.pem",
            "-CAkey",
            "factory.key",
            "-CAcreateserial",
            "-days",
            "5",
            "-extfile",
            "leaf.ext",
            "-out",
            "boot.pem",
        ],
    );
    let p = put_policy(&s, "operational", json!({ "issuer": "uploaded", "certificate": chain, "privateKey": ca_key })).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let pem = |f: &str| std::fs::read_to_string(d.join(f)).expect("read PEM");
    let group = json!({
        "enrollmentGroupId": "line",
        "credentialPolicyName": "operational",
        "attestation": { "type": "x509", "x509": { "signingCertificates": {
            "primary": { "certificate": pem("factory.pem") },
            "secondary": { "certificate": std::fs::read_to_string(&operational_root).expect("root") }
        } } }
    });
    let g = s.service(Method::PUT, "/enrollmentGroups/line", Some(group)).await;
    assert_eq!(g.status, 200, "{}", g.body);

    // OpenSSL's certificates start now; the service's clock started with the test.
    s.clock.advance(chrono::Duration::seconds(60));
    let der = |f: &str| openssl(d, &["x509", "-in", f, "-outform", "DER"]);
    let pkcs8 = |f: &str| openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", f, "-outform", "DER"]);
    let boot_tls = common::tls_client_config_with_cert(&s.ca_pem, &[der("boot.pem")], &pkcs8("boot.key"));
    let operational_key = key(d, "operational", "ec:P-256");
    let registration = Registration { csr: Some(csr(d, &operational_key, "line-dev-7")) };
    let device = HttpsDevice::with_tls(endpoint(&s), FAST, boot_tls).expect("client").registering(registration);
    let status = device.provision_x509("line-dev-7").await.expect("assigned with the factory certificate");
    let issued = check_issued(d, &status, "line-dev-7", &operational_key, &operational_root);

    let chain: Vec<Vec<u8>> = issued.iter().take(2).map(|c| B64.decode(c).expect("base64")).collect();
    let tls = std::sync::Arc::new(common::tls_client_config_with_cert(&s.ca_pem, &chain, &pkcs8("operational.key")));
    let ep = Endpoint { host: "127.0.0.1".into(), ..endpoint(&s) };
    let mut session = MqttSession::connect_with(&ep, s.mqtt_port, "line-dev-7", tls, None).await.expect("MQTT with the issued certificate");
    let again = session.provision("line-dev-7", FAST).await.expect("registered with the operational certificate");
    assert_eq!(again.status.as_str(), "assigned");
    let state = again.registration_state.expect("registrationState");
    assert_eq!(state.x509.and_then(|x| x.enrollment_group_id).as_deref(), Some("line"));
    assert!(state.issued_certificate_chain.is_none(), "no CSR, nothing issued");
}
