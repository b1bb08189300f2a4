"""The official Python device SDK (azure-iot-device 2.14, paho MQTT) provisioning symmetric-key
devices against the local DPS Console service, over MQTT/TLS (8883) and MQTT over WebSockets (443).

Section numbers (§) refer to shared/reference/dps-protocol.md. Besides what `register()`
returns, the tests read what the SDK itself logged it received (topic + payload, see the
`wire` fixture in conftest.py) to pin the exact response topics and bodies of §2.5 / §1.8.
"""

import asyncio
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.iot.device import ProvisioningDeviceClient, exceptions
from azure.iot.device.aio import ProvisioningDeviceClient as AsyncProvisioningDeviceClient
from azure.iot.device.common.evented_callback import EventedCallback

from conftest import DEFAULT_HUB, derive_device_key, random_key, uid

TRANSPORTS = [pytest.param(False, id="mqtt-8883"), pytest.param(True, id="websockets-443")]
SUBSTATUSES = {"initialAssignment", "deviceDataMigrated", "deviceDataReset", "reprovisionedToInitialAssignment"}
RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# §2.4 request topics (what the SDK publishes) and §2.5 response topics (what the service must send).
REGISTER_TOPIC = re.compile(r"^\$dps/registrations/PUT/iotdps-register/\?\$rid=(?P<rid>[^&]+)$")
POLL_TOPIC = re.compile(
    r"^\$dps/registrations/GET/iotdps-get-operationstatus/\?\$rid=(?P<rid>[^&]+)&operationId=(?P<op>[^&]+)$")
RES_202 = re.compile(r"^\$dps/registrations/res/202/\?\$rid=(?P<rid>[^&$]+)&retry-after=(?P<ra>\d+)$")
RES_200 = re.compile(r"^\$dps/registrations/res/200/\?\$rid=(?P<rid>[^&$]+)(&retry-after=\d+)?$")
RES_401 = re.compile(r"^\$dps/registrations/res/401/\?\$rid=(?P<rid>[^&$]+)(&retry-after=\d+)?$")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def make_client(dps, registration_id, key, websockets, payload=None):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=dps.host,
        registration_id=registration_id,
        id_scope=dps.id_scope,
        symmetric_key=key,
        server_verification_cert=dps.ca_pem,
        websockets=websockets,
    )
    if payload is not None:
        client.provisioning_payload = payload
    return client


def shutdown_quietly(client):
    """register() only shuts its pipeline down after success; after a failure the MQTT connection
    stays open, so close it here (no public API for that in 2.14)."""
    try:
        done = EventedCallback()
        client._pipeline.shutdown(callback=done)
        done.wait_for_completion(timeout=5)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


def register(dps, registration_id, key, websockets, payload=None):
    client = make_client(dps, registration_id, key, websockets, payload)
    try:
        return client.register()
    finally:
        shutdown_quietly(client)


def register_error(dps, registration_id, key, websockets):
    """register() must raise; returns the exception."""
    client = make_client(dps, registration_id, key, websockets)
    try:
        result = client.register()
    except Exception as e:  # noqa: BLE001 - the exception is what we assert on
        return e
    finally:
        shutdown_quietly(client)
    pytest.fail(f"registration of {registration_id} unexpectedly returned {result}")


def parse_time(value, what):
    assert isinstance(value, str), f"{what}: {value!r}"
    m = RFC3339.match(value)
    assert m, f"{what} {value!r} is not an RFC 3339 date-time"
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def assert_assigned(result, registration_id, device_id=None, substatus="initialAssignment", hub=DEFAULT_HUB):
    """§1.5/§1.6: the whole RegistrationResult the SDK builds from the terminal 200."""
    assert result is not None, "register() returned None"
    assert result.status == "assigned", f"status: {result}"
    assert isinstance(result.operation_id, str) and result.operation_id, f"operation_id: {result.operation_id!r}"
    assert re.fullmatch(r"[A-Za-z0-9.-]+", result.operation_id), f"§1.5 operationId charset: {result.operation_id!r}"
    st = result.registration_state
    assert st is not None, "registration_state missing (no registrationState in the 200 body)"
    assert st.assigned_hub == hub, f"assigned_hub: {st.assigned_hub!r}"
    assert st.device_id == (device_id or registration_id), f"device_id: {st.device_id!r}"
    if substatus == "any":
        assert st.sub_status in SUBSTATUSES, f"substatus: {st.sub_status!r}"
    else:
        assert st.sub_status == substatus, f"substatus: {st.sub_status!r}"
    created = parse_time(st.created_date_time, "createdDateTimeUtc")
    now = datetime.now(timezone.utc)
    assert now - timedelta(hours=1) < created < now + timedelta(minutes=5), f"createdDateTimeUtc {created} vs now {now}"
    if st.last_update_date_time is not None:
        parse_time(st.last_update_date_time, "lastUpdatedDateTimeUtc")
    assert isinstance(st.etag, str) and st.etag, f"etag: {st.etag!r}"
    return st


def assert_wire_assigned(wire, registration_id):
    """§2.4/§2.5/§0.5: CONNACK 0, register publish → res/202 with the same $rid and retry-after=2
    (the service runs with --retry-after-secs 2), polls → terminal res/200 with the poll's $rid."""
    trace = "\n" + wire.dump()
    assert wire.connacks() == [0], f"§2.2 CONNACK return codes: {wire.connacks()}{trace}"
    sent = wire.sent()
    assert sent and REGISTER_TOPIC.match(sent[0]), f"first publish is not the register request{trace}"
    register_rid = REGISTER_TOPIC.match(sent[0]).group("rid")
    polls = [POLL_TOPIC.match(t) for t in sent[1:]]
    assert polls and all(polls), f"expected poll publishes after the register publish{trace}"
    received = wire.received()
    assert len(received) == len(sent), f"one response per request expected{trace}"

    topic, body = received[0]
    m = RES_202.match(topic)
    assert m, f"§2.5 first response must be $dps/registrations/res/202/?$rid=..&retry-after=N, got {topic}{trace}"
    assert m.group("rid") == register_rid, f"§2.5 $rid echo: {m.group('rid')} != {register_rid}"
    assert m.group("ra") == "2", f"retry-after {m.group('ra')} (service runs with --retry-after-secs 2)"
    doc = json.loads(body)
    assert doc["status"] == "assigning", doc
    operation_id = doc["operationId"]
    assert operation_id and re.fullmatch(r"[A-Za-z0-9.-]+", operation_id), doc
    if "registrationState" in doc:
        assert doc["registrationState"]["registrationId"] == registration_id, doc

    for poll, (topic, body) in zip(polls, received[1:]):
        assert poll.group("op") == operation_id, f"SDK polled another operation?{trace}"
        m = RES_202.match(topic) or RES_200.match(topic)
        assert m, f"§2.5 poll response topic {topic}{trace}"
        assert m.group("rid") == poll.group("rid"), f"§2.5 $rid echo on poll: {topic} vs {poll.string}"
    topic, body = received[-1]
    assert RES_200.match(topic), f"§2.5 terminal response must be res/200, got {topic}{trace}"
    final = json.loads(body)
    assert final["operationId"] == operation_id, final
    assert final["status"] == "assigned", final
    rs = final["registrationState"]
    assert rs["registrationId"] == registration_id, final
    assert rs["status"] == "assigned", final
    return final


def assert_unauthorized(err, wire, what):
    """§1.8/§2.5/§2.7 + contract: CONNECT accepted (CONNACK 0), the register publish answered on
    $dps/registrations/res/401/?$rid=<rid> with {"errorCode":401002,trackingId,message,timestampUtc}.
    Python turns a 300–428 status into ServiceError, wrapped by register() in ClientError."""
    trace = "\n" + wire.dump()
    assert type(err) is exceptions.ClientError, f"{what}: expected ClientError, got {type(err).__name__}: {err}{trace}"
    cause = err.__cause__
    assert isinstance(cause, exceptions.ServiceError), f"{what}: cause {type(cause).__name__}: {cause}{trace}"
    assert str(cause) == "register request returned a service error status code 401", f"{what}: {cause}{trace}"
    assert wire.connacks() == [0], f"{what}: CONNACK codes {wire.connacks()}{trace}"
    sent = wire.sent()
    assert len(sent) == 1 and REGISTER_TOPIC.match(sent[0]), f"{what}: publishes{trace}"
    received = wire.received()
    assert len(received) == 1, f"{what}: responses{trace}"
    topic, body = received[0]
    m = RES_401.match(topic)
    assert m, f"{what}: §2.5 topic {topic}{trace}"
    assert m.group("rid") == REGISTER_TOPIC.match(sent[0]).group("rid"), f"{what}: $rid echo{trace}"
    doc = json.loads(body)
    assert doc.get("errorCode") == 401002, f"{what}: §1.8 body {doc}"
    assert isinstance(doc.get("trackingId"), str) and doc["trackingId"], doc
    assert isinstance(doc.get("message"), str) and doc["message"], doc
    parse_time(doc.get("timestampUtc"), "timestampUtc")
    assert "status" not in doc and "operationId" not in doc, f"an error body is not an operation status: {doc}"
    return doc


# ------------------------------------------------------------------------------------------------
# successful registrations
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("websockets", TRANSPORTS)
def test_s2_s4_2_individual_symmetric_key_is_assigned(dps, wire, websockets):
    """§2.2–§2.5, §4.1, §4.2: individual enrollment, device signs with its primary key."""
    e = dps.create_enrollment()
    reg_id = e["registrationId"]
    result = register(dps, reg_id, e["attestation"]["symmetricKey"]["primaryKey"], websockets)
    st = assert_assigned(result, reg_id)
    final = assert_wire_assigned(wire, reg_id)
    assert final["registrationState"]["etag"] == st.etag

    # The service keeps the same record (§7.3 "always update the registration record").
    rec = dps.registration_record(reg_id)
    assert rec["registrationId"] == reg_id, rec
    assert rec["assignedHub"] == st.assigned_hub, rec
    assert rec["deviceId"] == st.device_id, rec
    assert rec["status"] == "assigned", rec


@pytest.mark.parametrize("websockets", TRANSPORTS)
def test_s4_2_group_derived_key_is_assigned(dps, wire, websockets):
    """§4.2: enrollment-group device signs with HMAC-SHA256(groupKey, registrationId)."""
    g = dps.create_group()
    reg_id = uid("py-grp-dev")
    key = derive_device_key(g["attestation"]["symmetricKey"]["primaryKey"], reg_id)
    assert dps.compute_device_key(g["attestation"]["symmetricKey"]["primaryKey"], reg_id) == key
    result = register(dps, reg_id, key, websockets)
    assert_assigned(result, reg_id)
    assert_wire_assigned(wire, reg_id)


def test_s4_2_group_secondary_derived_key_and_mixed_case_id(dps):
    """§4.2/§0.14: key derived from the group's *secondary* key; the HMAC is over the id as sent."""
    g = dps.create_group()
    reg_id = uid("Py-Grp-MixedCase")
    key = derive_device_key(g["attestation"]["symmetricKey"]["secondaryKey"], reg_id)
    assert_assigned(register(dps, reg_id, key, websockets=False), reg_id)


def test_s7_3_same_device_twice_gets_same_hub(dps):
    """§7.2/§7.3: registering again (first over MQTT, then over WebSockets) keeps hub and device id."""
    e = dps.create_enrollment()
    reg_id = e["registrationId"]
    key = e["attestation"]["symmetricKey"]["primaryKey"]
    first = assert_assigned(register(dps, reg_id, key, websockets=False), reg_id)
    second = assert_assigned(register(dps, reg_id, key, websockets=True), reg_id, substatus="any")
    assert second.assigned_hub == first.assigned_hub
    assert second.device_id == first.device_id
    assert second.created_date_time is not None


def test_s7_4_custom_device_id_from_enrollment(dps):
    """§7.4: an individual enrollment's deviceId is the device id in the hub."""
    device_id = uid("py-custom-dev")
    e = dps.create_enrollment(device_id=device_id)
    result = register(dps, e["registrationId"], e["attestation"]["symmetricKey"]["primaryKey"], websockets=False)
    assert_assigned(result, e["registrationId"], device_id=device_id)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"modelId": "dtmi:com:example:Thermostat;1", "nested": {"n": 1, "list": [1, "two", None]}}, id="object"),
        pytest.param("plain string payload", id="string"),
    ],
)
def test_s0_12_custom_provisioning_payload_is_accepted(dps, wire, payload):
    """§0.12/§2.4: Python sends {"payload": <custom>, "registrationId": ..}; the service accepts it."""
    e = dps.create_enrollment()
    reg_id = e["registrationId"]
    result = register(dps, reg_id, e["attestation"]["symmetricKey"]["primaryKey"], websockets=False, payload=payload)
    assert_assigned(result, reg_id)
    assert_wire_assigned(wire, reg_id)


def test_async_client_registers_over_websockets(dps):
    """The asyncio client (azure.iot.device.aio.ProvisioningDeviceClient), §2.1 WebSockets on 443."""
    g = dps.create_group()
    reg_id = uid("py-async")
    key = derive_device_key(g["attestation"]["symmetricKey"]["primaryKey"], reg_id)

    async def run():
        client = AsyncProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=dps.host,
            registration_id=reg_id,
            id_scope=dps.id_scope,
            symmetric_key=key,
            server_verification_cert=dps.ca_pem,
            websockets=True,
        )
        client.provisioning_payload = {"async": True}
        return await asyncio.wait_for(client.register(), timeout=60)

    assert_assigned(asyncio.run(run()), reg_id)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("websockets", TRANSPORTS)
def test_s1_8_wrong_individual_key_is_401002(dps, wire, websockets):
    """§4.1/§1.8/§2.5: a SAS signed with the wrong key → res/401 with errorCode 401002."""
    e = dps.create_enrollment()
    err = register_error(dps, e["registrationId"], random_key(), websockets)
    assert_unauthorized(err, wire, "wrong individual key")
    # A failed authentication creates no registration record.
    res = dps.cli("registration", "show", "--registration-id", e["registrationId"], check=False)
    assert res.returncode != 0, f"registration record exists after a 401: {res.stdout}"


def test_s7_1_unknown_registration_id_is_401002(dps, wire):
    """§7.1: no individual enrollment and no group whose derived key verifies → 401 (401002)."""
    dps.create_group()  # a group exists, but the device's key is not derived from it
    reg_id = uid("py-unknown")
    err = register_error(dps, reg_id, random_key(32), websockets=False)
    assert_unauthorized(err, wire, "unknown registration id")


def test_s4_2_group_key_itself_is_rejected(dps, wire):
    """§4.2: a group device presenting the group key (not the derived key) → 401002."""
    g = dps.create_group()
    err = register_error(dps, uid("py-raw-grp-key"), g["attestation"]["symmetricKey"]["primaryKey"], websockets=True)
    assert_unauthorized(err, wire, "group key used as device key")


def _assert_disabled(err, wire, reg_id):
    """§1.6: Python has no case for `disabled`: register() raises ClientError from ServiceError
    'invalid registration status disabled'. On the wire: res/202 (register), then res/200 with
    status "disabled" and no hub (§7.1)."""
    trace = "\n" + wire.dump()
    assert type(err) is exceptions.ClientError, f"expected ClientError, got {type(err).__name__}: {err}{trace}"
    cause = err.__cause__
    assert isinstance(cause, exceptions.ServiceError), f"cause {type(cause).__name__}: {cause}{trace}"
    assert str(cause) == (
        "Query Status Operation encountered an invalid registration status disabled with a status code of 200"
    ), f"{cause}{trace}"
    received = wire.received()
    assert received and RES_202.match(received[0][0]), f"register must be answered 202 first{trace}"
    topic, body = received[-1]
    assert RES_200.match(topic), f"terminal response topic {topic}{trace}"
    doc = json.loads(body)
    assert doc["status"] == "disabled", doc
    assert doc.get("operationId"), doc
    rs = doc.get("registrationState")
    if rs is not None:
        assert rs.get("registrationId") == reg_id, doc
        assert rs.get("status") == "disabled", doc
        assert not rs.get("assignedHub"), f"a disabled device gets no hub: {doc}"


def test_s1_6_disabled_individual_enrollment(dps, wire):
    """§1.6/§7.1: disabled individual enrollment → status "disabled"."""
    e = dps.create_enrollment(disabled=True)
    assert e["provisioningStatus"] == "disabled", e
    err = register_error(dps, e["registrationId"], e["attestation"]["symmetricKey"]["primaryKey"], websockets=False)
    _assert_disabled(err, wire, e["registrationId"])


def test_s1_6_disabled_enrollment_group(dps, wire):
    """§1.6/§7.1: disabled enrollment group → status "disabled" for its devices (over WebSockets)."""
    g = dps.create_group(disabled=True)
    reg_id = uid("py-grp-dis")
    err = register_error(dps, reg_id, derive_device_key(g["attestation"]["symmetricKey"]["primaryKey"], reg_id),
                         websockets=True)
    _assert_disabled(err, wire, reg_id)


@pytest.mark.parametrize("websockets", TRANSPORTS)
def test_s2_4_second_register_on_the_same_connection_after_enabling(dps, wire, websockets):
    """§2.4/§7.1: one MQTT connection, two register requests. The first meets a disabled
    enrollment (Python keeps the connection after a failure); the enrollment is then enabled and
    register() on the same client is assigned — no reconnect, the service re-reads the enrollment."""
    e = dps.create_enrollment(disabled=True)
    reg_id = e["registrationId"]
    client = make_client(dps, reg_id, e["attestation"]["symmetricKey"]["primaryKey"], websockets)
    try:
        with pytest.raises(exceptions.ClientError) as info:
            client.register()
        _assert_disabled(info.value, wire, reg_id)
        dps.cli("enrollment", "update", "--enrollment-id", reg_id, "--provisioning-status", "enabled")
        result = client.register()
    finally:
        shutdown_quietly(client)
    assert_assigned(result, reg_id)  # first assignment of this device → initialAssignment
    assert wire.connacks() == [0], f"expected a single connection:\n{wire.dump()}"
    registers = [t for t in wire.sent() if REGISTER_TOPIC.match(t)]
    assert len(registers) == 2, wire.dump()
    assert len(set(registers)) == 2, f"each register has its own $rid:\n{wire.dump()}"


# ------------------------------------------------------------------------------------------------
# keeps serving
# ------------------------------------------------------------------------------------------------
def test_service_keeps_provisioning_after_errors_and_in_parallel(dps):
    """After 401s and disabled answers on both transports, four devices (two per transport,
    individual and group) register concurrently (§2, §8)."""
    e_bad = dps.create_enrollment()
    errors = [
        register_error(dps, e_bad["registrationId"], random_key(), websockets=False),
        register_error(dps, uid("py-nobody"), random_key(), websockets=True),
    ]
    assert all(type(x) is exceptions.ClientError for x in errors), errors

    g = dps.create_group()
    gkey = g["attestation"]["symmetricKey"]["primaryKey"]
    jobs = []
    for ws in (False, True):
        e = dps.create_enrollment()
        jobs.append((e["registrationId"], e["attestation"]["symmetricKey"]["primaryKey"], ws))
        gid = uid("py-par-grp")
        jobs.append((gid, derive_device_key(gkey, gid), ws))
    barrier = threading.Barrier(len(jobs))

    def run(job):
        reg_id, key, ws = job
        barrier.wait(timeout=30)
        return register(dps, reg_id, key, ws)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    for (reg_id, _, _), result in zip(jobs, results):
        assert_assigned(result, reg_id)
    assert len({r.registration_state.etag for r in results}) == len(results), "each registration has its own etag"
    dps.assert_alive()
