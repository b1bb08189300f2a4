//! X.509 attestation over HTTPS and MQTT with client certificates (§4.3, §7.1, §7.4), and the CA store's
//! proof-of-possession flow.

mod common;

use common::TestService;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::Method;
use serde_json::{json, Value};

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    let key = KeyPair::generate().expect("generates a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = match parent {
        None => params.self_signed(&key),
        Some(p) => params.signed_by(&key, &Issuer::from_params(&p.params, &p.key)),
    }
    .expect("set-up");
    Ca { pem: cert.pem(), der: cert.der().to_vec(), params, key }
}

/// A device certificate (DER) and its PKCS#8 key; self-signed without an issuer.
fn device(cn: &str, issuer: Option<&Ca>, expired: bool) -> (Vec<u8>, String, Vec<u8>) {
    let key = KeyPair::generate().expect("generates a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = match issuer {
        None => params.self_signed(&key),
        Some(i) => params.signed_by(&key, &Issuer::from_params(&i.params, &i.key)),
    }
    .expect("set-up");
    (cert.der().to_vec(), cert.pem(), key.serialize_der())
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect()
}

async fn individual(s: &TestService, id: &str, pem: &str, extra: Value) {
    let mut doc = json!({ "registrationId": id, "attestation": { "type": "x509", "x509": { "clientCertificates": { "primary": { "certificate": pem } } } } });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let a = s.service(Method::PUT, &format!("/enrollments/{id}"), Some(doc)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["attestation"]["x509"]["clientCertificates"]["primary"]["info"]["sha256Thumbprint"].is_string(), "{}", a.body);
}

async fn group(s: &TestService, id: &str, x509: Value) {
    let a = s
        .service(
            Method::PUT,
            &format!("/enrollmentGroups/{id}"),
            Some(json!({ "enrollmentGroupId": id, "attestation": { "type": "x509", "x509": x509 } })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// (a) An individual enrollment with a self-signed leaf; the hub identity is self-signed with its thumbprint.
#[tokio::test]
async fn individual_self_signed_leaf() {
    let s = TestService::start().await;
    let (der, pem, key) = device("x509-dev-1", None, false);
    individual(&s, "x509-dev-1", &pem, json!({})).await;
    let done = s.provision_x509("x509-dev-1", std::slice::from_ref(&der), &key).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let r = &done.body["registrationState"];
    assert_eq!((r["status"].as_str(), r["deviceId"].as_str()), (Some("assigned"), Some("x509-dev-1")), "{r}");
    assert_eq!(r["x509"]["certificateInfo"]["sha256Thumbprint"].as_str(), Some(sha256_hex(&der).as_str()));
    assert_eq!(r["x509"]["certificateInfo"]["subjectName"], "CN=x509-dev-1");
    let ids = s.service(Method::GET, "/linkedHubs/local-hub.dps.local/devices", None).await;
    assert_eq!(ids.body[0]["authenticationType"], "selfSigned", "{}", ids.body);
    assert_eq!(ids.body[0]["x509Thumbprint"]["primaryThumbprint"].as_str(), Some(sha256_hex(&der).as_str()), "§7.4: {}", ids.body);
    // Another self-signed certificate with the same CN is refused.
    let (other, _, other_key) = device("x509-dev-1", None, false);
    TestService::assert_error(&s.provision_x509("x509-dev-1", &[other], &other_key).await, 401, 401002);
}

/// (b), (c) and precedence: groups on the root and on the intermediate; the nearest one decides.
#[tokio::test]
async fn groups_on_root_and_intermediate() {
    let s = TestService::start().await;
    let root = ca("Plant Root", None);
    let int = ca("Line Intermediate", Some(&root));
    group(&s, "on-root", json!({ "signingCertificates": { "primary": { "certificate": root.pem } } })).await;
    let (leaf, _, key) = device("line-dev-1", Some(&int), false);
    let done = s.provision_x509("line-dev-1", &[leaf.clone(), int.der.clone()], &key).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let x = &done.body["registrationState"]["x509"];
    assert_eq!(
        (x["enrollmentGroupId"].as_str(), x["signingCertificateInfo"]["subjectName"].as_str()),
        (Some("on-root"), Some("CN=Plant Root"))
    );
    // Without the intermediate the chain does not reach the root.
    let a = s.provision_x509("line-dev-1", std::slice::from_ref(&leaf), &key).await;
    TestService::assert_error(&a, 401, 401002);

    group(&s, "on-intermediate", json!({ "signingCertificates": { "primary": { "certificate": int.pem } } })).await;
    let (leaf2, _, key2) = device("line-dev-2", Some(&int), false);
    let done = s.provision_x509("line-dev-2", &[leaf2, int.der.clone(), root.der.clone()], &key2).await;
    assert_eq!(done.body["registrationState"]["x509"]["enrollmentGroupId"], "on-intermediate", "{}", done.body);
}

/// (d) A CA reference counts only once the CA is verified by proof of possession.
#[tokio::test]
async fn ca_references_need_proof_of_possession() {
    let s = TestService::start().await;
    let root = ca("Factory Root", None);
    let up = s.service(Method::PUT, "/certificates/factory-root", Some(json!({ "certificate": root.pem }))).await;
    assert_eq!((up.status, &up.body["isVerified"]), (200, &json!(false)), "{}", up.body);
    let missing = s
        .service(
            Method::PUT,
            "/enrollmentGroups/g",
            Some(json!({ "enrollmentGroupId": "g", "attestation": { "type": "x509", "x509": { "caReferences": { "primary": "nope" } } } })),
        )
        .await;
    TestService::assert_error(&missing, 400, 400004);
    group(&s, "by-ca", json!({ "caReferences": { "primary": "factory-root" } })).await;
    let (leaf, _, key) = device("fact-dev-1", Some(&root), false);
    let refused = s.provision_x509("fact-dev-1", std::slice::from_ref(&leaf), &key).await;
    TestService::assert_error(&refused, 401, 401002);
    assert!(refused.body["message"].as_str().unwrap_or_default().contains("not verified"), "{}", refused.body);

    let code = s.service(Method::POST, "/certificates/factory-root/generateVerificationCode", None).await;
    let code = code.body["verificationCode"].as_str().unwrap_or_default().to_owned();
    assert_eq!(code.len(), 48);
    let (wrong_cn, _, _) = device("not-the-code", Some(&root), false);
    let pem_of = |der: &[u8]| {
        use base64::Engine;
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", base64::engine::general_purpose::STANDARD.encode(der))
    };
    let bad = s.service(Method::POST, "/certificates/factory-root/verify", Some(json!({ "certificate": pem_of(&wrong_cn) }))).await;
    TestService::assert_error(&bad, 400, 400004);
    let impostor = ca("Factory Root", None);
    let (forged, _, _) = device(&code, Some(&impostor), false);
    let bad = s.service(Method::POST, "/certificates/factory-root/verify", Some(json!({ "certificate": pem_of(&forged) }))).await;
    TestService::assert_error(&bad, 400, 400004);
    let (proof, _, _) = device(&code, Some(&root), false);
    let ok = s.service(Method::POST, "/certificates/factory-root/verify", Some(json!({ "certificate": pem_of(&proof) }))).await;
    assert_eq!(ok.body["isVerified"], true, "{}", ok.body);
    let done = s.provision_x509("fact-dev-1", &[leaf], &key).await;
    assert_eq!(done.body["registrationState"]["x509"]["enrollmentGroupId"], "by-ca", "{}", done.body);
}

/// Issue 13 fix 1: Azure's C service client sends `certificate` as base64 of the PEM text. The enrollment,
/// the group, the CA upload, proof of possession and the chain inspector all take it (§4.3, §5.3).
#[tokio::test]
async fn base64_of_pem_is_accepted_everywhere() {
    use base64::Engine;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let s = TestService::start().await;

    let (leaf, leaf_pem, key) = device("b64pem-dev", None, false);
    individual(&s, "b64pem-dev", &b64(&leaf_pem), json!({})).await;
    let got = s.service(Method::GET, "/enrollments/b64pem-dev", None).await;
    let info = &got.body["attestation"]["x509"]["clientCertificates"]["primary"]["info"];
    assert_eq!(
        (info["sha256Thumbprint"].as_str(), info["subjectName"].as_str()),
        (Some(sha256_hex(&leaf).as_str()), Some("CN=b64pem-dev"))
    );
    let done = s.provision_x509("b64pem-dev", std::slice::from_ref(&leaf), &key).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);

    let root = ca("B64 Root", None);
    group(&s, "b64-signing", json!({ "signingCertificates": { "primary": { "certificate": b64(&root.pem) } } })).await;
    let (leaf2, _, key2) = device("b64pem-dev-2", Some(&root), false);
    let done = s.provision_x509("b64pem-dev-2", &[leaf2], &key2).await;
    assert_eq!(done.body["registrationState"]["x509"]["enrollmentGroupId"], "b64-signing", "{}", done.body);

    let ca_root = ca("B64 CA", None);
    let up = s.service(Method::PUT, "/certificates/b64-ca", Some(json!({ "certificate": b64(&ca_root.pem) }))).await;
    assert_eq!((up.status, &up.body["info"]["subjectName"]), (200, &json!("CN=B64 CA")), "{}", up.body);
    let code = s.service(Method::POST, "/certificates/b64-ca/generateVerificationCode", None).await;
    let code = code.body["verificationCode"].as_str().unwrap_or_default().to_owned();
    let (_, proof_pem, _) = device(&code, Some(&ca_root), false);
    let ok = s.service(Method::POST, "/certificates/b64-ca/verify", Some(json!({ "certificate": b64(&proof_pem) }))).await;
    assert_eq!(ok.body["isVerified"], true, "{}", ok.body);

    let int = ca("B64 Intermediate", Some(&root));
    let (_, leaf3_pem, _) = device("b64pem-dev-3", Some(&int), false);
    let bundle = b64(&format!("{leaf3_pem}{}{}", int.pem, root.pem));
    let a = s.send(Method::POST, "/certificates/inspect", Some(&s.service_sas()), &[], Some(bundle.into_bytes())).await;
    assert_eq!(a.body["certificates"].as_array().map(Vec::len), Some(3), "{}", a.body);
    assert_eq!(a.body["verdict"]["valid"], true, "{}", a.body);
}

/// (e), (f), (g): expired leaf, CN ≠ registration id, a device blocked inside an enabled group.
#[tokio::test]
async fn refusals_and_blocking() {
    let s = TestService::start().await;
    let root = ca("Root", None);
    group(&s, "fleet", json!({ "signingCertificates": { "primary": { "certificate": root.pem } } })).await;
    let (old, _, old_key) = device("fleet-old", Some(&root), true);
    let a = s.provision_x509("fleet-old", &[old], &old_key).await;
    TestService::assert_error(&a, 401, 401002);
    assert!(a.body["message"].as_str().unwrap_or_default().contains("expired"), "{}", a.body);

    let (leaf, pem, key) = device("fleet-1", Some(&root), false);
    let a = s.provision_x509("fleet-2", std::slice::from_ref(&leaf), &key).await;
    TestService::assert_error(&a, 401, 401002);
    assert!(a.body["message"].as_str().unwrap_or_default().contains("CN"), "{}", a.body);

    assert_eq!(s.provision_x509("fleet-1", std::slice::from_ref(&leaf), &key).await.body["status"], "assigned");
    individual(&s, "fleet-1", &pem, json!({ "provisioningStatus": "disabled" })).await;
    let blocked = s.provision_x509("fleet-1", &[leaf], &key).await;
    assert_eq!((blocked.status, &blocked.body["status"]), (200, &json!("disabled")), "{}", blocked.body);

    // No certificate and no SAS.
    let a = s.send(Method::PUT, &format!("/{}/registrations/fleet-1/register", s.scope), None, &[], Some(b"{}".to_vec())).await;
    TestService::assert_error(&a, 401, 401002);
}

/// X.509 over MQTT: CONNECT without a password, the TLS client certificate attests (§2.2, §4.3).
#[tokio::test]
async fn x509_over_mqtt() {
    use rumqttc::mqttbytes::v4::*;
    use rumqttc::mqttbytes::QoS;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestService::start().await;
    let (der, pem, key) = device("mq-x509", None, false);
    individual(&s, "mq-x509", &pem, json!({})).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.mqtt_port)).await.expect("connects");
    let cfg = common::tls_client_config_with_cert(&s.ca_pem, &[der], &key);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("converts");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("connects");
    let mut out = bytes::BytesMut::new();
    let mut c = Connect::new("mq-x509");
    c.set_login(format!("{}/registrations/mq-x509/api-version=2019-03-31", s.scope), "");
    Packet::Connect(c).write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    let mut sub = Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    Packet::Subscribe(sub).write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    let mut p = Publish::new("$dps/registrations/PUT/iotdps-register/?$rid=1", QoS::AtMostOnce, b"{}".to_vec());
    p.pkid = 0;
    Packet::Publish(p).write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
    tls.write_all(&out).await.expect("write all");
    let mut buf = bytes::BytesMut::new();
    let mut packets = Vec::new();
    while packets.len() < 3 {
        match Packet::read(&mut buf, 1 << 20) {
            Ok(p) => packets.push(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                buf.reserve(4096);
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(10), tls.read_buf(&mut buf)).await.expect("timeout").unwrap_or(0);
                assert!(n > 0, "closed early: {packets:?}");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(packets[0], Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)));
    assert_eq!(packets[1], Packet::SubAck(SubAck::new(1, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)])));
    let Packet::Publish(r) = &packets[2] else { panic!("{packets:?}") };
    assert!(r.topic.starts_with("$dps/registrations/res/202/?$rid=1"), "{}", r.topic);
}

/// The chain inspector endpoint (§1.5 info, issue 4 item 7): PEM bundle in, each certificate and a verdict out.
#[tokio::test]
async fn chain_inspector_endpoint() {
    let s = TestService::start().await;
    let root = ca("Inspect Root", None);
    let int = ca("Inspect Intermediate", Some(&root));
    let (_, leaf_pem, _) = device("inspect-dev", Some(&int), false);
    let bundle = format!("{leaf_pem}{}{}", int.pem, root.pem);
    let sas = s.service_sas();
    let a = s.send(Method::POST, "/certificates/inspect", Some(&sas), &[], Some(bundle.into_bytes())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["certificates"].as_array().map(Vec::len), Some(3), "{}", a.body);
    assert_eq!(a.body["certificates"][0]["subject"], "CN=inspect-dev");
    assert_eq!(a.body["verdict"]["valid"], true, "{}", a.body);
    let (_, old_pem, _) = device("inspect-old", Some(&root), true);
    let a = s.send(Method::POST, "/certificates/inspect", Some(&sas), &[], Some(format!("{old_pem}{}", root.pem).into_bytes())).await;
    assert_eq!(a.body["verdict"]["valid"], false, "{}", a.body);
    TestService::assert_error(
        &s.send(Method::POST, "/certificates/inspect", Some(&sas), &[], Some(b"not a certificate".to_vec())).await,
        400,
        400004,
    );
}
