"""A minimal MQTT 3.1.1 client over TLS or over WebSockets/TLS, packet by packet.

Used by test_mqtt_wire.py to send exactly what the C, .NET and Java SDKs send (which cannot run
here) and to see every packet the service returns, in order (§2.6 ordering is invisible through
paho). Written for the tests; not a general client.
"""

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import time
import urllib.parse

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14)
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
         11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}


def sas_token(id_scope, registration_id, key_b64, *, encode="upper", skn="absent", ttl=3600):
    """§4.1 device SAS. encode: 'upper' (%2F, Python/.NET), 'lower' (%2f, C) or 'raw' (Node/Java).
    skn: 'absent' (Python), 'registration' (C/Node/.NET) or 'empty' (Java)."""
    resource = f"{id_scope}/registrations/{registration_id}"
    if encode == "raw":
        sr = resource
    else:
        sr = urllib.parse.quote(resource, safe="")
        if encode == "lower":
            sr = sr.replace("%2F", "%2f")
    se = str(int(time.time()) + ttl)
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), f"{sr}\n{se}".encode(), hashlib.sha256).digest())
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig.decode(), safe='')}&se={se}"
    if skn == "registration":
        token += "&skn=registration"
    elif skn == "empty":
        token += "&skn="
    return token


def _enc_len(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


class Packet:
    def __init__(self, ptype, flags, body):
        self.type, self.flags, self.body = ptype, flags, body

    @property
    def name(self):
        return NAMES.get(self.type, str(self.type))

    # PUBLISH accessors
    def publish(self):
        assert self.type == PUBLISH, self
        qos = (self.flags >> 1) & 3
        tlen = struct.unpack("!H", self.body[:2])[0]
        topic = self.body[2:2 + tlen].decode("utf-8")
        rest = self.body[2 + tlen:]
        pid = None
        if qos:
            pid = struct.unpack("!H", rest[:2])[0]
            rest = rest[2:]
        return {"topic": topic, "qos": qos, "retain": self.flags & 1, "dup": (self.flags >> 3) & 1, "id": pid,
                "payload": rest}

    def __repr__(self):
        if self.type == PUBLISH:
            p = self.publish()
            return f"PUBLISH(qos={p['qos']} id={p['id']} {p['topic']} {p['payload'][:300]!r})"
        return f"{self.name}(flags={self.flags:#x} {self.body.hex()})"


class _TlsStream:
    def __init__(self, host, port, ca_pem, timeout):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=ca_pem)
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        return self.sock.recv(65536)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class _WsStream(_TlsStream):
    """RFC 6455 client: masked binary frames out, unmasked frames in (§2.1)."""

    def __init__(self, host, port, ca_pem, timeout, path, subprotocol):
        super().__init__(host, port, ca_pem, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the WebSocket upgrade; got {buf!r}")
            buf += chunk
        head, self._pending = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if not self.status_line.startswith("HTTP/1.1 101"):
            raise ConnectionError(f"WebSocket upgrade refused: {head.decode('latin-1')}")
        if self.headers.get("sec-websocket-accept") != expected.decode():
            raise ConnectionError(f"bad Sec-WebSocket-Accept: {self.headers}")
        self._frames = b""

    def send(self, data):
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = bytes([0x82, 0x80 | n])
        elif n < 65536:
            hdr = bytes([0x82, 0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", n)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        # Returns the payload of the next data frame(s); answers pings; b"" on close.
        while True:
            frame = self._parse_frame()
            if frame is not None:
                opcode, payload = frame
                if opcode in (0x0, 0x1, 0x2):
                    return payload
                if opcode == 0x8:
                    return b""
                if opcode == 0x9:  # ping → pong
                    mask = os.urandom(4)
                    self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask +
                                      bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                continue
            chunk = self._pending or self.sock.recv(65536)
            self._pending = b""
            if not chunk:
                return b""
            self._frames += chunk

    def _parse_frame(self):
        b = self._frames
        if len(b) < 2:
            return None
        opcode, masked, n, i = b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, i = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, i = struct.unpack("!Q", b[2:10])[0], 10
        if masked:
            raise AssertionError("RFC 6455: a server must not mask frames")
        if len(b) < i + n:
            return None
        self._frames = b[i + n:]
        return opcode, b[i:i + n]


class RawMqtt:
    def __init__(self, host, port, ca_pem, *, ws_path=None, subprotocol="mqtt", timeout=10):
        self.timeout = timeout
        if ws_path is None:
            self.stream = _TlsStream(host, port, ca_pem, timeout)
        else:
            self.stream = _WsStream(host, port, ca_pem, timeout, ws_path, subprotocol)
        self._buf = b""
        self.log = []

    def close(self):
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending -------------------------------------------------------------------------
    def send(self, ptype, flags, body):
        self.stream.send(bytes([(ptype << 4) | flags]) + _enc_len(len(body)) + body)

    def connect(self, client_id, username, password, *, clean=True, keepalive=0):
        flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0) | (0x02 if clean else 0)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _str(client_id)
        if username is not None:
            body += _str(username)
        if password is not None:
            body += _str(password)
        self.send(CONNECT, 0, body)

    def subscribe(self, pid, topic, qos=1):
        self.send(SUBSCRIBE, 2, struct.pack("!H", pid) + _str(topic) + bytes([qos]))

    def publish(self, topic, payload=b"", *, qos=1, pid=None):
        body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + payload
        self.send(PUBLISH, qos << 1, body)

    def puback(self, pid):
        self.send(PUBACK, 0, struct.pack("!H", pid))

    def unsubscribe(self, pid, topic):
        self.send(UNSUBSCRIBE, 2, struct.pack("!H", pid) + _str(topic))

    def pingreq(self):
        self.send(PINGREQ, 0, b"")

    def disconnect(self):
        self.send(DISCONNECT, 0, b"")

    # -- receiving -----------------------------------------------------------------------
    def recv(self, timeout=None):
        """Next packet, or None if the server closed the connection. Raises TimeoutError."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            pkt = self._parse()
            if pkt is not None:
                self.log.append(pkt)
                return pkt
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no packet within {timeout or self.timeout}s; so far: {self.log}")
            self.stream.sock.settimeout(left)
            try:
                chunk = self.stream.recv()
            except socket.timeout as e:
                raise TimeoutError(f"no packet within {timeout or self.timeout}s; so far: {self.log}") from e
            except (ConnectionError, ssl.SSLError, OSError):
                return None
            if not chunk:
                return None
            self._buf += chunk

    def _parse(self):
        b = self._buf
        if len(b) < 2:
            return None
        mult, n, i = 1, 0, 1
        while True:
            if i >= len(b):
                return None
            n += (b[i] & 0x7F) * mult
            mult *= 128
            i += 1
            if not b[i - 1] & 0x80:
                break
        if len(b) < i + n:
            return None
        self._buf = b[i + n:]
        return Packet(b[0] >> 4, b[0] & 0x0F, b[i:i + n])
