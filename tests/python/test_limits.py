"""The Azure limits profile (README "Azure limits profile"; dps-protocol.md §1.9, §2.7, §9) with the official
Python device SDK (azure-iot-device 2.14, MQTT): it receives `res/429/?$rid=…&retry-after=n` on register and on
poll, backs off and still provisions.

What the SDK does (azure/iot/device/provisioning/pipeline/pipeline_stages_provisioning.py): for both the
register and the operation-status request, a status >= 429 goes to `_process_retry_status_code`, which starts a
Timer for `retry-after` seconds (default 2) and re-sends the same request; 300–428 fail the operation.

The session service starts with small windows for the profile (conftest.py: 1 registration per 3 s, 1 poll per 6 s
per device) and the default profile; this test switches the profile on through the service API (the console's
Settings toggle) and off again. A blocker device takes the registration slot just before the device under test,
and a custom allocation webhook that answers after 5 s keeps the device `assigning` at its second poll (a poll of
a running assignment waits up to 1 s for its outcome; retry-after is 2 s), which comes inside the poll window.
"""

import base64
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import DEFAULT_HUB, random_key, uid
from test_mqtt import make_client

WINDOW_SECS = 3
WEBHOOK_DELAY_SECS = 5
RES_429 = "$dps/registrations/res/429/"


def service_call(dps, method, path, body=None):
    """A service-API request signed like the service SDKs (SAS over the host, the owner policy)."""
    cs = dict(p.split("=", 1) for p in dps.endpoint["serviceConnectionString"].split(";"))
    expiry = str(int(time.time()) + 3600)
    sig = base64.b64encode(hmac.new(base64.b64decode(cs["SharedAccessKey"]), f"{cs['HostName']}\n{expiry}".encode(),
                                    hashlib.sha256).digest()).decode()
    token = (f"SharedAccessSignature sr={cs['HostName']}&sig={urllib.parse.quote(sig, safe='')}&se={expiry}"
             f"&skn={cs['SharedAccessKeyName']}")
    data = None if body is None else json.dumps(body).encode()
    sep = "&" if "?" in path else "?"
    req = urllib.request.Request(f"https://{dps.host}{path}{sep}api-version=2021-10-01", data=data, method=method,
                                 headers={"authorization": token, "content-type": "application/json"})
    ctx = ssl.create_default_context(cadata=dps.ca_pem)
    with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
        return json.loads(r.read() or b"null")


class SlowWebhook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length", "0")))
        time.sleep(WEBHOOK_DELAY_SECS)
        body = json.dumps({"iotHubHostName": DEFAULT_HUB}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def azure_limits(dps):
    assert service_call(dps, "PUT", "/service/limits", {"profile": "azure"})["profile"] == "azure"
    try:
        yield
    finally:
        assert service_call(dps, "PUT", "/service/limits", {"profile": "default"})["profile"] == "default"


@pytest.fixture
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowWebhook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/allocate"
    finally:
        server.shutdown()
        server.server_close()


def enroll(dps, registration_id, webhook_url=None):
    key = random_key()
    doc = {"registrationId": registration_id,
           "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": random_key()}}}
    if webhook_url:
        doc["allocationPolicy"] = "custom"
        doc["customAllocationDefinition"] = {"webhookUrl": webhook_url, "apiVersion": "2021-10-01"}
    service_call(dps, "PUT", f"/enrollments/{registration_id}", doc)
    return key


def test_the_sdk_backs_off_on_429_for_register_and_poll_and_still_provisions(dps, azure_limits, webhook, wire):
    """§1.9 / §2.7: res/429 with retry-after on register and on poll; the SDK waits and provisions."""
    blocker, device = uid("py-lim-blocker"), uid("py-lim")
    blocker_key = enroll(dps, blocker)
    key = enroll(dps, device, webhook)
    time.sleep(WINDOW_SECS)  # earlier registrations leave the window
    b = make_client(dps, blocker, blocker_key, False).register()
    assert b.status == "assigned", b
    wire.events.clear()
    result = make_client(dps, device, key, False).register()
    assert result.status == "assigned" and result.registration_state.assigned_hub == DEFAULT_HUB, result

    refused = [(t, p) for t, p in wire.received() if t.startswith(RES_429)]
    trace = "\n" + wire.dump()
    assert refused, f"the SDK received no 429{trace}"
    for topic, payload in refused:
        assert "&retry-after=" in topic and topic.index("$rid=") < topic.index("retry-after"), topic
        assert json.loads(payload)["errorCode"] == 429001, payload
    note = service_call(dps, "GET", f"/registrations/{device}/trace")["trace"]["throttled"]
    assert note["registrations"] >= 1 and note["polls"] >= 1, note
    assert len(refused) == note["registrations"] + note["polls"], f"{note}{trace}"
