//! The MQTT session (§2) after TLS: the input is the client's byte stream — CONNECT, SUBSCRIBE, PUBLISH,
//! PINGREQ, … packets in any order, whole, cut or malformed — fed to `mqtt::session::run` over a duplex
//! stream that ends with the input. The session must end (no hang) and write only whole, well-formed MQTT
//! 3.1.1 packets. The topic and user-name parsers of `dps_proto::mqtt` get the same bytes as text, and a
//! register topic must read back from the topic a device would build from it.

use std::sync::Arc;

use bytes::BytesMut;
use dps_proto::mqtt::{parse_request_topic, parse_user_name, register_topic, MqttRequest};
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{harness, Harness, ANSWER_DEADLINE};

/// Runs one session on `input`; returns what the server wrote.
async fn session(h: &Harness, input: Vec<u8>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let app = Arc::clone(&h.app);
    let (limits, shutdown) = (app.mqtt_limits, app.shutdown.clone());
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40001));
    let task = tokio::spawn(dps_service::mqtt::session::run(server, app, peer, None, "mqtt", limits, shutdown));
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
        Err(_) => panic!("the MQTT session did not end within {ANSWER_DEADLINE:?} of its input's end"),
    }
}

/// Everything the server wrote decodes as whole MQTT packets.
fn check_packets(out: &[u8]) {
    let mut buf = BytesMut::from(out);
    while !buf.is_empty() {
        if let Err(e) = Packet::read(&mut buf, usize::MAX) {
            panic!("the server wrote a malformed or cut packet ({e:?}): {out:?}");
        }
    }
}

fn check_topics(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_user_name(text);
    if let Some(MqttRequest::Register { rid }) = parse_request_topic(text) {
        let again = parse_request_topic(&register_topic(&rid));
        assert_eq!(again, Some(MqttRequest::Register { rid }), "a register topic does not read back");
    }
}

/// The MQTT port's session on a raw client stream.
pub fn mqtt_session(data: &[u8]) {
    check_topics(data);
    let h = harness();
    let out = h.runtime.block_on(session(h, data.to_vec()));
    check_packets(&out);
}
