"""Session fixtures: ONE `dps serve` on 127.0.0.1:443 (HTTPS + MQTT over WebSockets) and
127.0.0.1:8883 (MQTT over TLS) for the whole Python suite.

The Python device SDK (azure-iot-device 2.14) cannot change ports: 8883 for MQTT, 443 for
MQTT over WebSockets; only the host and the trusted CA can be set (TOOLCHAIN §6). So the
service must own those two ports while the suite runs; if it cannot, the suite fails loudly.

Environment:
  DPS_BIN                 the dps binary (default ${CARGO_TARGET_DIR:-~/.cache/dps-target}/debug/dps)
  DPS_KEEP_DATA=1         keep the temp data dir (with service.log) after the run
  DPS_START_TIMEOUT_SECS  how long to wait for endpoint.json (default 30)
"""

import ast
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

HOST = "127.0.0.1"
HTTPS_PORT = 443  # fixed by the Python SDK for websockets=True
MQTT_PORT = 8883  # fixed by the Python SDK for websockets=False
DEFAULT_HUB = "local-hub.dps.local"


def dps_bin() -> Path:
    if os.environ.get("DPS_BIN"):
        return Path(os.environ["DPS_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(Path.home(), ".cache", "dps-target")
    return Path(target) / "debug" / "dps"


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _who_listens(port: int) -> str:
    try:
        out = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    except Exception:  # noqa: BLE001 - diagnostics only
        return "(ss not available)"


def _check_port_free(port: int) -> None:
    """Fail (not skip) with a clear message when HOST:port cannot be bound."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((HOST, port))
    except OSError as e:
        pytest.fail(
            f"cannot bind {HOST}:{port} ({e}). The Python Azure IoT SDK only connects to port {port} "
            f"(8883 = MQTT, 443 = MQTT over WebSockets), so the test service needs it: run as root / "
            f"with CAP_NET_BIND_SERVICE and stop whatever holds it:\n{_who_listens(port)}",
            pytrace=False,
        )
    finally:
        s.close()


def derive_device_key(group_key: str, registration_id: str) -> str:
    """§4.2: base64(HMAC-SHA256(base64decode(groupKey), utf8(registrationId)))."""
    digest = hmac.new(base64.b64decode(group_key), registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def random_key(nbytes: int = 64) -> str:
    return base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class DpsService:
    """A running `dps serve` plus helpers for the tests."""

    def __init__(self, data_dir: Path, proc: subprocess.Popen, log_file: Path, endpoint: dict):
        self.data_dir = data_dir
        self.proc = proc
        self.log_file = log_file
        self.endpoint = endpoint
        self.id_scope: str = endpoint["idScope"]
        self.host: str = endpoint["host"]
        self.ca_pem: str = Path(endpoint["caCertificate"]).read_text()

    # -- CLI -------------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, data_dir: bool = True) -> subprocess.CompletedProcess:
        full = [str(dps_bin()), *args]
        if data_dir:
            full += ["--data-dir", str(self.data_dir)]
        res = subprocess.run(full, capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(
                f"`{' '.join(full)}` exited {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
            )
        return res

    def cli_json(self, *args: str):
        res = self.cli(*args, "--output", "json")
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"`dps {' '.join(args)}` printed invalid JSON ({e}):\n{res.stdout}") from e

    def create_enrollment(self, registration_id: str = None, *, primary_key: str = None, disabled: bool = False,
                          device_id: str = None) -> dict:
        """Individual symmetric-key enrollment via the CLI; returns the enrollment JSON (with keys)."""
        registration_id = registration_id or uid("py-ind")
        args = ["enrollment", "create", "--enrollment-id", registration_id]
        if primary_key:
            args += ["--primary-key", primary_key]
        if disabled:
            args += ["--provisioning-status", "disabled"]
        if device_id:
            args += ["--device-id", device_id]
        e = self.cli_json(*args)
        assert e["registrationId"] == registration_id, e
        assert e["attestation"]["symmetricKey"]["primaryKey"], e
        return e

    def create_group(self, group_id: str = None, *, disabled: bool = False) -> dict:
        """Symmetric-key enrollment group via the CLI; returns the group JSON (with keys)."""
        group_id = group_id or uid("py-grp")
        args = ["enrollment-group", "create", "--group-id", group_id]
        if disabled:
            args += ["--provisioning-status", "disabled"]
        g = self.cli_json(*args)
        assert g["enrollmentGroupId"] == group_id, g
        assert g["attestation"]["symmetricKey"]["primaryKey"], g
        return g

    def compute_device_key(self, group_key: str, registration_id: str) -> str:
        res = self.cli("compute-device-key", "--key", group_key, "--registration-id", registration_id, data_dir=False)
        return res.stdout.strip()

    def registration_record(self, registration_id: str) -> dict:
        return self.cli_json("registration", "show", "--registration-id", registration_id)

    def log_tail(self, n: int = 60) -> str:
        return _tail(self.log_file, n)

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"dps exited with {self.proc.returncode}; log:\n{self.log_tail()}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def dps():
    binary = dps_bin()
    if not binary.exists():
        pytest.fail(f"dps binary not found at {binary} (set DPS_BIN)", pytrace=False)
    _check_port_free(HTTPS_PORT)
    _check_port_free(MQTT_PORT)

    data_dir = Path(tempfile.mkdtemp(prefix="dps-py-"))
    log_file = data_dir / "service.log"
    endpoint_file = data_dir / "endpoint.json"
    args = [str(binary), "serve", "--data-dir", str(data_dir), "--bind", HOST,
            "--https-port", str(HTTPS_PORT), "--mqtt-port", str(MQTT_PORT), "--console-port", "0",
            "--retry-after-secs", "2"]
    # The Azure limits profile stays off (default profile); test_limits.py switches it on at run time and relies
    # on these small windows: 1 registration per 3 s per service, 1 poll per 3 s per device.
    env = {**os.environ, "DPS_LIMITS_AZURE_REGISTRATIONS_PER_WINDOW": "1", "DPS_LIMITS_AZURE_REGISTRATION_WINDOW_SECS": "3",
           "DPS_LIMITS_AZURE_POLLS_PER_WINDOW": "1", "DPS_LIMITS_AZURE_POLL_WINDOW_SECS": "6"}
    env.pop("DPS_LIMITS", None)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + float(os.environ.get("DPS_START_TIMEOUT_SECS", "30"))
        endpoint = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log_text = _tail(log_file)
                hint = ""
                if re.search(r"(?i)address (already )?in use|permission denied", log_text):
                    hint = (f"\n=> dps could not bind {HOST}:{HTTPS_PORT} / {HOST}:{MQTT_PORT}; the Python SDK "
                            f"needs exactly these ports.\n{_who_listens(HTTPS_PORT)}\n{_who_listens(MQTT_PORT)}")
                pytest.fail(f"`{' '.join(args)}` exited early with {proc.returncode}; log:\n{log_text}{hint}",
                            pytrace=False)
            try:
                ep = json.loads(endpoint_file.read_text())
                if ep.get("idScope") and ep.get("caCertificate") and ep.get("ports", {}).get("https"):
                    endpoint = ep
                    break
            except (OSError, ValueError):
                pass  # not written yet / half written
            time.sleep(0.05)
        if endpoint is None:
            pytest.fail(f"timed out waiting for {endpoint_file}; log:\n{_tail(log_file)}", pytrace=False)
        assert endpoint["host"] == HOST, endpoint
        assert endpoint["ports"]["https"] == HTTPS_PORT, endpoint
        assert endpoint["ports"].get("mqtt") == MQTT_PORT, (
            f"endpoint.json has no mqtt port {MQTT_PORT}: {endpoint}")
        svc = DpsService(data_dir, proc, log_file, endpoint)
        yield svc
        svc.assert_alive()
    finally:
        _stop(proc)
        if os.environ.get("DPS_KEEP_DATA"):
            print(f"\n[dps] data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Wire trace: what the SDK itself logged it sent / received (azure-iot-device debug logging).
# --------------------------------------------------------------------------------------------
_RECEIVED = re.compile(r"^Received payload:(?P<payload>.*) on topic:(?P<topic>\S+)$", re.S)
_PUBLISHING = re.compile(r"^publishing on (?P<topic>\S+)$")
_CONNECTED = re.compile(r"^connected with result code: (?P<rc>\d+)$")
_TRACE_LOGGERS = (
    "azure.iot.device.provisioning.pipeline.pipeline_stages_provisioning_mqtt",
    "azure.iot.device.common.mqtt_transport",
)


class WireTrace(logging.Handler):
    """Collects (direction, topic, payload) tuples from the SDK's own log lines."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.events = []
        self._lock = threading.Lock()

    def emit(self, record):
        msg = record.getMessage()
        m = _RECEIVED.match(msg)
        with self._lock:
            if m:
                raw = m.group("payload")
                try:
                    payload = ast.literal_eval(raw)
                except (ValueError, SyntaxError):
                    payload = raw
                if isinstance(payload, bytes):
                    payload = payload.decode("utf-8", "replace")
                self.events.append(("recv", m.group("topic"), payload))
            elif (m := _PUBLISHING.match(msg)):
                self.events.append(("send", m.group("topic"), None))
            elif (m := _CONNECTED.match(msg)):
                self.events.append(("connack", None, int(m.group("rc"))))

    def received(self):
        with self._lock:
            return [(t, p) for d, t, p in self.events if d == "recv"]

    def sent(self):
        with self._lock:
            return [t for d, t, _ in self.events if d == "send"]

    def connacks(self):
        with self._lock:
            return [p for d, _, p in self.events if d == "connack"]

    def dump(self) -> str:
        with self._lock:
            return "\n".join(f"  {d:7} {t} {p!r}" for d, t, p in self.events)


@pytest.fixture
def wire():
    handler = WireTrace()
    saved = []
    for name in _TRACE_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
