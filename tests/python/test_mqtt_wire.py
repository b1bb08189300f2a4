"""Packet-level MQTT checks for what the other SDKs send (C, .NET v1, Java cannot run here), made
with the raw client in mqtt_raw.py against the same service as test_mqtt.py. Each test
reproduces one SDK's CONNECT / SUBSCRIBE / PUBLISH as described in the reference (§2, §4.1) and
asserts every packet the service returns, in order.
"""

import json
import re
import time

import pytest

from conftest import DEFAULT_HUB, HTTPS_PORT, MQTT_PORT, derive_device_key, uid
from mqtt_raw import CONNACK, PINGRESP, PUBACK, PUBLISH, SUBACK, UNSUBACK, RawMqtt, sas_token

SUB_FILTER = "$dps/registrations/res/#"


def username(dps, reg_id, client_version="raw-test%2F1.0"):
    return f"{dps.id_scope}/registrations/{reg_id}/api-version=2019-03-31&ClientVersion={client_version}"


def open_client(dps, *, ws_path=None, subprotocol="mqtt"):
    if ws_path is None:
        return RawMqtt(dps.host, MQTT_PORT, dps.ca_pem)
    return RawMqtt(dps.host, HTTPS_PORT, dps.ca_pem, ws_path=ws_path, subprotocol=subprotocol)


def connect_and_subscribe(c, dps, reg_id, password, *, clean=True, keepalive=0, user=None, sub_pid=1):
    """§2.2 CONNACK must be exactly 20 02 00 00 (session-present 0, rc 0); §2.3 SUBACK echoes the id, grants 1."""
    c.connect(reg_id, user or username(dps, reg_id), password, clean=clean, keepalive=keepalive)
    p = c.recv()
    assert p is not None and p.type == CONNACK, f"expected CONNACK, got {p}"
    assert p.body == b"\x00\x00", f"§2.2/§0.6 CONNACK must be session-present 0, rc 0: {p.body.hex()}"
    c.subscribe(sub_pid, SUB_FILTER, 1)
    p = c.recv()
    assert p is not None and p.type == SUBACK, f"expected SUBACK, got {p} (log {c.log})"
    assert p.body == sub_pid.to_bytes(2, "big") + b"\x01", f"§2.3 SUBACK: {p.body.hex()}"


def request(c, topic, payload, *, qos, pid, rid):
    """Publish one request; §2.6: for QoS 1 the very next packet is its PUBACK, then the response
    PUBLISH (QoS 1, retain 0) on res/<status>/?$rid=<rid>[&retry-after=N]. Returns (status, query, body)."""
    c.publish(topic, payload, qos=qos, pid=pid)
    if qos:
        p = c.recv()
        assert p is not None and p.type == PUBACK, f"§2.6 expected PUBACK {pid} before the response, got {p}; log {c.log}"
        assert p.body == pid.to_bytes(2, "big"), f"PUBACK id {p.body.hex()} != {pid}"
    p = c.recv()
    assert p is not None and p.type == PUBLISH, f"expected the response PUBLISH, got {p}; log {c.log}"
    pub = p.publish()
    assert pub["qos"] == 1 and pub["retain"] == 0, f"§2.5 response must be QoS 1, retain 0: {p}"
    c.puback(pub["id"])
    m = re.fullmatch(r"\$dps/registrations/res/(\d{3})/\?\$rid=([^&$]+)((?:&[^&$]+)*)", pub["topic"])
    assert m, f"§2.5/§0.5 response topic layout: {pub['topic']}"
    assert m.group(2) == rid, f"§2.5 $rid must be echoed first and as received: {pub['topic']} (sent {rid})"
    query = dict(kv.split("=", 1) for kv in m.group(3).split("&")[1:])
    return int(m.group(1)), query, json.loads(pub["payload"])


def register_flow(c, reg_id, register_body, *, qos, poll_body=b"", rids=("2", "3", "4", "5", "6", "7", "8")):
    """Register, then poll until terminal (bounded). Returns the terminal document."""
    status, query, doc = request(c, f"$dps/registrations/PUT/iotdps-register/?$rid={rids[0]}", register_body,
                                 qos=qos, pid=2, rid=rids[0])
    assert status == 202, f"register → {status} {doc}"
    assert query.get("retry-after") == "2", f"§2.5 202 must carry retry-after (=2 here): {query}"
    assert doc["status"] == "assigning" and doc["operationId"], doc
    op = doc["operationId"]
    for i, rid in enumerate(rids[1:], start=3):
        time.sleep(int(query.get("retry-after", "2")))
        status, query, doc = request(
            c, f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}", poll_body,
            qos=qos, pid=i, rid=rid)
        if status == 200:
            assert "retry-after" not in query or query["retry-after"].isdigit(), query
            assert doc["operationId"] == op, doc
            return doc
        assert status == 202, f"poll → {status} {doc}"
        assert query.get("retry-after") == "2", query
    pytest.fail(f"{reg_id}: no terminal answer after {len(rids) - 1} polls")


def assert_assigned_doc(doc, reg_id):
    assert doc["status"] == "assigned", doc
    rs = doc["registrationState"]
    assert rs["registrationId"] == reg_id, doc
    assert rs["assignedHub"] == DEFAULT_HUB, doc
    assert rs["deviceId"] == reg_id, doc
    assert rs["status"] == "assigned", doc
    assert rs["substatus"] == "initialAssignment", doc
    assert rs.get("etag") and rs.get("createdDateTimeUtc"), doc


def new_device(dps):
    e = dps.create_enrollment()
    return e["registrationId"], e["attestation"]["symmetricKey"]["primaryKey"]


def test_s2_6_dotnet_v1_sequence_qos1_empty_bodies(dps):
    """.NET v1 (§2.2, §2.4, §2.6, §0.12): keep-alive 0, %2F-encoded sr with skn=registration, integer
    $rid, QoS 1, EMPTY register and poll payloads (registration id from the user name). Strict order
    CONNACK → SUBACK → PUBACK → PUBLISH(202) → (PUBACK → PUBLISH)* ending in 200 "assigned"."""
    reg_id, key = new_device(dps)
    with open_client(dps) as c:
        connect_and_subscribe(c, dps, reg_id, sas_token(dps.id_scope, reg_id, key, encode="upper", skn="registration"),
                              user=username(dps, reg_id, "Microsoft.Azure.Devices.Provisioning.Client%2F1.19.4"))
        doc = register_flow(c, reg_id, b"", qos=1, poll_body=b"")
    assert_assigned_doc(doc, reg_id)


def test_s2_2_java_clean_session_0_qos0_raw_sr_empty_skn(dps):
    """Java (§2.2 clean session 0 → session-present must be 0; §2.4 QoS 0 requests, so no PUBACK;
    §4.1 raw sr and `&skn=`). Response PUBLISHes still arrive at QoS 1."""
    reg_id, key = new_device(dps)
    with open_client(dps) as c:
        connect_and_subscribe(c, dps, reg_id, sas_token(dps.id_scope, reg_id, key, encode="raw", skn="empty"),
                              clean=False, keepalive=230, user=username(dps, reg_id, "2019-03-31"))
        doc = register_flow(c, reg_id, json.dumps({"registrationId": reg_id}).encode(), qos=0)
    assert_assigned_doc(doc, reg_id)


def test_s2_1_c_sdk_websocket_subprotocol_MQTT_lowercase_escapes_qos0(dps):
    """C SDK over WebSockets (§2.1 path /$iothub/websocket, sub-protocol `MQTT` upper case; §4.1 sr
    with lower-case %2f; §2.4 QoS 0, the poll re-sends the full registration JSON)."""
    g = dps.create_group()
    reg_id = uid("raw-c-grp")
    key = derive_device_key(g["attestation"]["symmetricKey"]["primaryKey"], reg_id)
    body = json.dumps({"registrationId": reg_id}).encode()
    with open_client(dps, ws_path="/$iothub/websocket", subprotocol="MQTT") as c:
        assert c.stream.headers.get("sec-websocket-protocol") == "MQTT", f"§0.7 sub-protocol echo: {c.stream.headers}"
        connect_and_subscribe(c, dps, reg_id, sas_token(dps.id_scope, reg_id, key, encode="lower", skn="registration"),
                              user=username(dps, reg_id, "1.15.0"))
        doc = register_flow(c, reg_id, body, qos=0, poll_body=body)
    assert_assigned_doc(doc, reg_id)


def test_s0_7_websocket_root_path_dotnet_java(dps):
    """.NET and Java MQTT use WebSocket path `/` (§2.1, §0.7: accept the upgrade on any path)."""
    reg_id, key = new_device(dps)
    with open_client(dps, ws_path="/", subprotocol="mqtt") as c:
        assert c.stream.headers.get("sec-websocket-protocol", "").lower() == "mqtt", c.stream.headers
        connect_and_subscribe(c, dps, reg_id, sas_token(dps.id_scope, reg_id, key))
        doc = register_flow(c, reg_id, json.dumps({"registrationId": reg_id, "payload": None}).encode(), qos=1)
    assert_assigned_doc(doc, reg_id)


def test_s0_12_payload_null_and_unknown_members_accepted(dps):
    """§0.12: `"payload": null` (Python) and unknown JSON members are ignored."""
    reg_id, key = new_device(dps)
    body = json.dumps({"payload": None, "registrationId": reg_id, "someFutureField": {"x": 1}}).encode()
    with open_client(dps) as c:
        connect_and_subscribe(c, dps, reg_id, sas_token(dps.id_scope, reg_id, key))
        doc = register_flow(c, reg_id, body, qos=1, poll_body=b" ")
    assert_assigned_doc(doc, reg_id)


def test_s2_3_suback_qos2_granted_1_other_filter_0x80_ping_unsubscribe(dps):
    """§2.3: QoS 2 on the DPS filter is granted 1; any other filter gets 0x80. PINGREQ → PINGRESP
    (Node/Python keep-alive); UNSUBSCRIBE → UNSUBACK (Node unsubscribes before disconnecting)."""
    reg_id, key = new_device(dps)
    with open_client(dps) as c:
        c.connect(reg_id, username(dps, reg_id), sas_token(dps.id_scope, reg_id, key), keepalive=60)
        p = c.recv()
        assert p.type == CONNACK and p.body == b"\x00\x00", p
        c.subscribe(7, SUB_FILTER, 2)
        p = c.recv()
        assert p.type == SUBACK and p.body == b"\x00\x07\x01", f"§2.3 QoS 2 → granted 1: {p}"
        c.subscribe(8, "devices/other/#", 1)
        p = c.recv()
        assert p is not None and p.type == SUBACK and p.body == b"\x00\x08\x80", f"§2.3 unsupported filter → 0x80: {p}"
        c.pingreq()
        p = c.recv()
        assert p is not None and p.type == PINGRESP and p.body == b"", f"PINGRESP expected: {p}"
        c.unsubscribe(9, SUB_FILTER)
        p = c.recv()
        assert p is not None and p.type == UNSUBACK and p.body == b"\x00\x09", f"UNSUBACK 9 expected: {p}"
        c.disconnect()
        assert c.recv(timeout=5) is None, f"the server should close after DISCONNECT; log {c.log}"


def test_s2_5_bad_sas_connack_0_then_res_401_on_qos0(dps):
    """Contract + §1.8/§2.5: a token signed with a wrong key is accepted at CONNECT and the (QoS 0,
    C-style) register is answered on res/401/?$rid=1 with errorCode 401002."""
    reg_id, _ = new_device(dps)
    wrong = sas_token(dps.id_scope, reg_id, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", encode="lower",
                      skn="registration")
    with open_client(dps) as c:
        connect_and_subscribe(c, dps, reg_id, wrong)
        status, query, doc = request(c, "$dps/registrations/PUT/iotdps-register/?$rid=1",
                                     json.dumps({"registrationId": reg_id}).encode(), qos=0, pid=0, rid="1")
    assert status == 401, (status, doc)
    assert doc["errorCode"] == 401002, doc
    assert doc.get("trackingId") and doc.get("message") and doc.get("timestampUtc"), doc


def test_s2_2_keep_alive_is_enforced_1_5x(dps):
    """§2.2 "Honour the standard 1.5× rule": with keep-alive 1 s and no traffic, the server closes the
    connection after ~1.5 s (and well before 5 s); keep-alive 0 (C, .NET v1) is never timed out."""
    reg_id, key = new_device(dps)
    reg_id1, key1 = new_device(dps)
    with open_client(dps) as idle0, open_client(dps) as idle1:
        idle0.connect(reg_id, username(dps, reg_id), sas_token(dps.id_scope, reg_id, key), keepalive=0)
        p = idle0.recv()
        assert p.type == CONNACK and p.body == b"\x00\x00", p
        idle1.connect(reg_id1, username(dps, reg_id1), sas_token(dps.id_scope, reg_id1, key1), keepalive=1)
        p = idle1.recv()
        assert p.type == CONNACK and p.body == b"\x00\x00", p
        start = time.monotonic()
        closed = idle1.recv(timeout=5)
        elapsed = time.monotonic() - start
        assert closed is None, f"expected the server to close the idle keep-alive=1 connection, got {closed}"
        assert 1.0 <= elapsed < 4.0, f"closed after {elapsed:.1f}s (1.5 × 1 s expected)"
        idle0.pingreq()
        p = idle0.recv(timeout=5)
        assert p is not None and p.type == PINGRESP, f"keep-alive 0 connection must stay open: {p}"
