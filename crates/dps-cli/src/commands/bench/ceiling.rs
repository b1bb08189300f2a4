//! The bare ceiling `dps bench` measures the service against (`dps bench ceiling-serve`, hidden; `dps bench`
//! spawns it): what this machine's TLS, HTTP and MQTT stack can answer when nothing else is done.
//!
//! Why it is built this way:
//! - **The same stack, nothing else.** TLS is `dps_service::tls::server_config` (rustls with aws-lc-rs, TLS 1.3
//!   and 1.2, client certificates requested and their handshake signature checked, the same ALPN) with a
//!   server certificate made by `dps_service::material::prepare` (same key type and chain length), accepted by
//!   `dps_service::tls::accept_loop` (TCP_NODELAY, one task per connection); HTTP is hyper-util's `auto`
//!   builder with upgrades, as the service serves it; MQTT is `rumqttc`'s `mqttbytes` v4 codec, as the
//!   service's endpoint decodes it. So a ratio to the ceiling measures what the service adds (authentication,
//!   the enrollment look-up, the store, the assignment, the hub identity) and not a cheaper transport.
//! - **The same exchanges.** `PUT /{scope}/registrations/{id}/register` reads the body and answers `202` with an
//!   `assigning` operation and `retry-after`; `GET …/operations/{op}` answers `200` `assigned` with a
//!   registration state of the service's shape. MQTT: CONNECT → CONNACK, SUBSCRIBE → SUBACK, a register
//!   PUBLISH → PUBACK and the `202` response on `$dps/registrations/res/…`, a poll → PUBACK and `200`. A device
//!   therefore makes at least the two requests it makes against the service (the service may need more polls).
//! - **No auth, no store, no clock.** No SAS is checked, no certificate chain is walked, nothing is written or
//!   looked up; timestamps are constant. Anything the service does beyond this is cost the ratio shows.
//! - **Its own process**, spawned like the service (port 0 listeners, an `endpoint.json` in a temporary data
//!   directory), so the load generator measures both the same way and `/proc/<pid>` gives its CPU and memory.
//!
//! AMQP has no ceiling here: fe2o3-amqp's acceptor *is* most of the service's AMQP endpoint, so a "bare" one
//! would be the endpoint minus the engine call — the ratio would say little beyond the HTTPS one.

use std::convert::Infallible;
use std::path::Path;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use dps_proto::mqtt::{parse_request_topic, parse_user_name, response_topic, MqttRequest};
use dps_proto::{EndpointInfo, Ports};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The ID scope the ceiling reports (it checks none).
const ID_SCOPE: &str = "0ne00CE1L1N";
/// The seconds a device is told to wait, as the service says them (`--retry-after-secs 2`).
const RETRY_AFTER: u32 = 2;
/// Constant timestamps (the ceiling reads no clock).
const WHEN: &str = "2026-01-01T00:00:00.0000000Z";

/// Serves the ceiling on 127.0.0.1 (HTTPS and MQTT, port 0) until the process is stopped; writes
/// `<data_dir>/endpoint.json` once both listen.
pub async fn serve(data_dir: &Path) -> Result<()> {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let material = dps_service::material::prepare(data_dir, &data_dir.join("master.key"), &names)?;
    let https_tls = dps_service::tls::server_config(material.server_chain.clone(), material.server_key.clone_key(), &[b"h2", b"http/1.1"])?;
    let mqtt_tls = dps_service::tls::server_config(material.server_chain, material.server_key, &[])?;
    let https = TcpListener::bind("127.0.0.1:0").await?;
    let mqtt = TcpListener::bind("127.0.0.1:0").await?;
    let info = EndpointInfo {
        id_scope: ID_SCOPE.to_owned(),
        host: "127.0.0.1".to_owned(),
        ports: Ports { https: Some(https.local_addr()?.port()), mqtt: Some(mqtt.local_addr()?.port()), amqp: None, console: None },
        ca_certificate: material.ca_path.display().to_string(),
        service_connection_string: String::new(),
    };
    super::rlimit_nofile();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let handshake = std::time::Duration::from_secs(10);
    let h = tokio::spawn(dps_service::tls::accept_loop("ceiling HTTPS", https, https_tls, handshake, shutdown.clone(), |_| {
        |stream, _chain| async move {
            let svc = hyper::service::service_fn(answer);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
        }
    }));
    let m = tokio::spawn(dps_service::tls::accept_loop("ceiling MQTT", mqtt, mqtt_tls, handshake, shutdown, |_| {
        |stream, _chain| mqtt_session(stream)
    }));
    let tmp = data_dir.join("endpoint.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&info)?)?;
    std::fs::rename(&tmp, data_dir.join("endpoint.json")).context("endpoint.json")?;
    let _ = tokio::join!(h, m);
    Ok(())
}

fn assigning(registration_id: &str) -> serde_json::Value {
    serde_json::json!({ "operationId": format!("4.ceiling.{registration_id}"), "status": "assigning" })
}

fn assigned(registration_id: &str) -> serde_json::Value {
    serde_json::json!({
        "operationId": format!("4.ceiling.{registration_id}"),
        "status": "assigned",
        "registrationState": {
            "registrationId": registration_id,
            "createdDateTimeUtc": WHEN,
            "assignedHub": "ceiling-hub.dps.local",
            "deviceId": registration_id,
            "status": "assigned",
            "substatus": "initialAssignment",
            "lastUpdatedDateTimeUtc": WHEN,
            "etag": "\"ceiling\""
        }
    })
}

/// The two device routes; anything else is 404.
async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    // /{scope}/registrations/{id}/register  |  /{scope}/registrations/{id}/operations/{op}
    let segs: Vec<&str> = parts.uri.path().trim_start_matches('/').split('/').collect();
    let (status, json, retry) = match (&parts.method, segs.as_slice()) {
        (&Method::PUT, [_, "registrations", id, "register"]) => (StatusCode::ACCEPTED, assigning(id), true),
        (&Method::GET, [_, "registrations", id, "operations", _]) => (StatusCode::OK, assigned(id), false),
        _ => (StatusCode::NOT_FOUND, serde_json::json!({ "errorCode": 404000, "message": "not a ceiling route" }), false),
    };
    let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json; charset=utf-8"));
    if retry {
        r.headers_mut().insert("retry-after", hyper::header::HeaderValue::from(RETRY_AFTER));
    }
    Ok(r)
}

/// One MQTT connection: CONNECT, SUBSCRIBE, then requests answered in order, until the peer goes.
async fn mqtt_session(mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
    let (mut registration_id, mut pkid) = (String::new(), 0u16);
    loop {
        let packet = match Packet::read(&mut buf, 128 * 1024) {
            Ok(p) => p,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                buf.reserve(4096);
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
            Err(_) => return,
        };
        let reply: Vec<Packet> = match packet {
            Packet::Connect(c) => {
                registration_id =
                    c.login.as_ref().and_then(|l| parse_user_name(&l.username)).map(|u| u.registration_id).unwrap_or(c.client_id);
                vec![Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))]
            }
            Packet::Subscribe(s) => vec![Packet::SubAck(SubAck::new(s.pkid, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]))],
            Packet::Publish(p) => {
                let (topic, body) = match parse_request_topic(&p.topic) {
                    Some(MqttRequest::Register { rid }) => (response_topic(202, &rid, Some(RETRY_AFTER)), assigning(&registration_id)),
                    Some(MqttRequest::OperationStatus { rid, .. }) => (response_topic(200, &rid, None), assigned(&registration_id)),
                    None => return,
                };
                pkid = pkid.checked_add(1).unwrap_or(1).max(1);
                let mut r = Publish::new(topic, QoS::AtLeastOnce, body.to_string());
                r.pkid = pkid;
                vec![Packet::PubAck(PubAck::new(p.pkid)), Packet::Publish(r)]
            }
            Packet::PingReq => vec![Packet::PingResp],
            Packet::PubAck(_) => continue,
            _ => return,
        };
        for p in reply {
            if p.write(&mut out, usize::MAX).is_err() {
                return;
            }
        }
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        out.clear();
    }
}

/// Serves until the process is stopped (the ceiling's own `dps bench ceiling-serve`).
pub async fn run(data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir)?;
    tokio::select! {
        r = serve(data_dir) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
