"""The official Python device SDK (azure-iot-device 2.14) provisioning X.509 devices against the local
DPS Console service, over MQTT/TLS (8883) and MQTT over WebSockets (443): the device's certificate
chain and key travel in the TLS handshake (`X509(cert_file, key_file)`), §4.3.

Certificates come from `dps cert` and from the openssl CLI; the values the service reports
(registrationState.x509, §1.5) are checked against `openssl x509`. The Python RegistrationResult
has no x509 member, so the x509 part is read from the terminal res/200 body the SDK logged (the
`wire` fixture in conftest.py).
"""

import re
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from azure.iot.device import X509, ProvisioningDeviceClient

from conftest import DEFAULT_HUB, dps_bin, uid
from test_mqtt import assert_assigned, assert_unauthorized, assert_wire_assigned, shutdown_quietly

TRANSPORTS = [pytest.param(False, id="mqtt-8883"), pytest.param(True, id="websockets-443")]
INFO_FIELDS = ("subjectName", "sha1Thumbprint", "sha256Thumbprint", "issuerName", "notBeforeUtc", "notAfterUtc",
               "serialNumber", "version")


# ------------------------------------------------------------------------------------------------
# certificates
# ------------------------------------------------------------------------------------------------
def _run(*args):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"`{' '.join(map(str, args))}` exited {res.returncode}\n{res.stdout}{res.stderr}"
    return res.stdout


class Cert:
    """A certificate on disk: `cert` (PEM), `key` (PKCS#8 PEM), `chain` (what a device presents:
    the certificate, then its issuers below the root)."""

    def __init__(self, name, cert, key, chain, is_root=False):
        self.name, self.cert, self.key, self.chain, self.is_root = name, Path(cert), Path(key), Path(chain), is_root

    def issuer_chain(self) -> str:
        return "" if self.is_root else self.chain.read_text()


def _presented(out: Path, name: str, issuer) -> Path:
    chain = out / f"{name}.presented.pem"
    chain.write_text((out / f"{name}.pem").read_text() + (issuer.issuer_chain() if issuer else ""))
    return chain


def dps_root(out: Path, name: str) -> Cert:
    _run(dps_bin(), "cert", "create-root", "--name", name, "--out-dir", out)
    return Cert(name, out / f"{name}.pem", out / f"{name}.key.pem", out / f"{name}.pem", is_root=True)


def dps_intermediate(out: Path, name: str, issuer: Cert) -> Cert:
    _run(dps_bin(), "cert", "create-intermediate", "--name", name, "--ca", issuer.cert, "--ca-key", issuer.key,
         "--out-dir", out)
    return Cert(name, out / f"{name}.pem", out / f"{name}.key.pem", _presented(out, name, issuer))


def dps_device(out: Path, registration_id: str, issuer: Cert = None) -> Cert:
    ca = ["--ca", issuer.cert, "--ca-key", issuer.key] if issuer else []
    _run(dps_bin(), "cert", "create-device", "--registration-id", registration_id, "--out-dir", out, *ca)
    # `dps cert` writes ID.chain.pem = ID + the --ca file; it must start with the certificate itself.
    assert (out / f"{registration_id}.chain.pem").read_text().startswith((out / f"{registration_id}.pem").read_text().strip())
    return Cert(registration_id, out / f"{registration_id}.pem", out / f"{registration_id}.key.pem",
                _presented(out, registration_id, issuer))


_CA_EXT = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
           "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid:always"]
_DEVICE_EXT = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
               "extendedKeyUsage=clientAuth", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid:always"]


def _openssl_issue(out: Path, name: str, ext, issuer: Cert = None) -> Cert:
    key, csr, crt, cnf = out / f"{name}.key.pem", out / f"{name}.csr", out / f"{name}.pem", out / f"{name}.ext"
    _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    cnf.write_text("[v3]\n" + "\n".join(ext) + "\n")
    signer = ["-CA", issuer.cert, "-CAkey", issuer.key] if issuer else ["-signkey", key]
    _run("openssl", "x509", "-req", "-in", csr, *signer, "-set_serial", "0x" + uuid.uuid4().hex[:30], "-days", "30",
         "-sha256", "-extfile", cnf, "-extensions", "v3", "-out", crt)
    return Cert(name, crt, key, _presented(out, name, issuer) if issuer else crt, is_root=issuer is None and ext is _CA_EXT)


def openssl_root(out, name):
    return _openssl_issue(out, name, _CA_EXT)


def openssl_intermediate(out, name, issuer):
    return _openssl_issue(out, name, _CA_EXT, issuer)


def openssl_device(out, registration_id, issuer=None):
    return _openssl_issue(out, registration_id, _DEVICE_EXT, issuer)


# Names as Azure's X509CertificateInfo shows them (§1.5): most specific RDN first, ", " between RDNs.
_AZURE_NAME = "esc_2253,esc_ctrl,esc_msb,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus_space,dn_rev,sname"


def openssl_info(pem: Path) -> dict:
    """What the service must report for this certificate (§1.5), read with openssl."""
    def field(*flags):
        return _run("openssl", "x509", "-in", pem, "-noout", *flags).strip().split("=", 1)[1]

    def date(flag):
        return datetime.strptime(field(flag), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=timezone.utc)

    return {
        "sha1": field("-fingerprint", "-sha1").replace(":", "").upper(),
        "sha256": field("-fingerprint", "-sha256").replace(":", "").upper(),
        "serial": field("-serial").upper().lstrip("0") or "0",
        "notBefore": date("-startdate"),
        "notAfter": date("-enddate"),
        "subject": _run("openssl", "x509", "-in", pem, "-noout", "-subject", "-nameopt", _AZURE_NAME).strip()[len("subject="):],
        "issuer": _run("openssl", "x509", "-in", pem, "-noout", "-issuer", "-nameopt", _AZURE_NAME).strip()[len("issuer="):],
    }


def _parse_utc(value: str) -> datetime:
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?Z$", value)
    assert m, f"not an RFC 3339 UTC date-time: {value!r}"
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def assert_cert_info(actual: dict, pem: Path, what: str) -> None:
    exp = openssl_info(pem)
    assert isinstance(actual, dict), f"{what}: X509CertificateInfo missing: {actual!r}"
    missing = [f for f in INFO_FIELDS if actual.get(f) is None]
    assert not missing, f"{what}: §1.5 required fields missing {missing}: {actual}"
    assert actual["sha1Thumbprint"] == exp["sha1"], f"{what}: sha1Thumbprint {actual['sha1Thumbprint']} != {exp['sha1']}"
    assert actual["sha256Thumbprint"] == exp["sha256"], f"{what}: sha256Thumbprint"
    assert actual["subjectName"] == exp["subject"], f"{what}: subjectName {actual['subjectName']!r}"
    assert actual["issuerName"] == exp["issuer"], f"{what}: issuerName {actual['issuerName']!r}"
    assert _parse_utc(actual["notBeforeUtc"]) == exp["notBefore"], f"{what}: notBeforeUtc {actual['notBeforeUtc']}"
    assert _parse_utc(actual["notAfterUtc"]) == exp["notAfter"], f"{what}: notAfterUtc {actual['notAfterUtc']}"
    assert re.fullmatch(r"[0-9A-F]+", actual["serialNumber"]), f"{what}: serialNumber {actual['serialNumber']!r}"
    assert (actual["serialNumber"].lstrip("0") or "0") == exp["serial"], f"{what}: serialNumber"
    assert actual["version"] == 3, f"{what}: version {actual['version']!r}"


# ------------------------------------------------------------------------------------------------
# SDK + service helpers
# ------------------------------------------------------------------------------------------------
def make_client(dps, registration_id: str, device: Cert, websockets: bool):
    return ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=dps.host,
        registration_id=registration_id,
        id_scope=dps.id_scope,
        x509=X509(cert_file=str(device.chain), key_file=str(device.key)),
        server_verification_cert=dps.ca_pem,
        websockets=websockets,
    )


def register(dps, registration_id, device, websockets):
    client = make_client(dps, registration_id, device, websockets)
    try:
        return client.register()
    finally:
        shutdown_quietly(client)


def register_error(dps, registration_id, device, websockets):
    client = make_client(dps, registration_id, device, websockets)
    try:
        result = client.register()
    except Exception as e:  # noqa: BLE001 - the exception is what we assert on
        return e
    finally:
        shutdown_quietly(client)
    pytest.fail(f"registration of {registration_id} unexpectedly returned {result}")


def hub_identity(dps, device_id):
    devices = dps.cli_json("hub", "devices", DEFAULT_HUB)
    assert isinstance(devices, list), devices
    return next((d for d in devices if d.get("deviceId") == device_id), None)


def assert_x509_assigned(dps, wire, result, registration_id, device: Cert, group=None):
    """The whole result: RegistrationResult (§1.5/§1.6), wire sequence (§2.5), registrationState.x509
    (certificateInfo = the leaf; for groups enrollmentGroupId + signingCertificateInfo), hub identity
    `selfSigned` (§7.4), registration record."""
    assert_assigned(result, registration_id)
    final = assert_wire_assigned(wire, registration_id)
    rs = final["registrationState"]
    assert rs["deviceId"] == registration_id and rs["assignedHub"] == DEFAULT_HUB, rs
    assert "symmetricKey" not in rs and "tpm" not in rs, rs
    x = rs.get("x509")
    assert isinstance(x, dict), f"§1.5 registrationState.x509 missing: {final}"
    assert_cert_info(x.get("certificateInfo"), device.cert, "x509.certificateInfo (leaf)")
    if group:
        group_id, signing_cert = group
        assert x.get("enrollmentGroupId") == group_id, x
        assert_cert_info(x.get("signingCertificateInfo"), signing_cert, "x509.signingCertificateInfo")
    else:
        assert "enrollmentGroupId" not in x and "signingCertificateInfo" not in x, x
    identity = hub_identity(dps, registration_id)
    assert identity, f"no identity for {registration_id} in {DEFAULT_HUB}"
    assert identity["registrationId"] == registration_id, identity
    assert identity["authenticationType"] == "selfSigned", f"§7.4 X.509 hub identity: {identity}"
    rec = dps.registration_record(registration_id)
    assert rec["assignedHub"] == DEFAULT_HUB and rec["deviceId"] == registration_id and rec["status"] == "assigned", rec


def x509_enrollment(dps, registration_id, cert: Path):
    e = dps.cli_json("enrollment", "create", "--enrollment-id", registration_id, "--attestation-type", "x509",
                     "--certificate-path", str(cert))
    assert e["registrationId"] == registration_id and e["attestation"]["type"] == "x509", e
    return e


def x509_group(dps, group_id, *, cert: Path = None, ca_name: str = None):
    args = ["enrollment-group", "create", "--group-id", group_id, "--attestation-type", "x509"]
    args += ["--certificate-path", str(cert)] if cert else ["--ca-name", ca_name]
    g = dps.cli_json(*args)
    assert g["enrollmentGroupId"] == group_id and g["attestation"]["type"] == "x509", g
    return g


@pytest.fixture
def certdir(tmp_path):
    return tmp_path


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("websockets", TRANSPORTS)
def test_s4_3_individual_self_signed_x509(dps, wire, certdir, websockets):
    """§4.3: individual enrollment holding the device's self-signed leaf (`dps cert create-device`)."""
    reg_id = uid("py-x509-ind")
    device = dps_device(certdir, reg_id)
    x509_enrollment(dps, reg_id, device.cert)
    result = register(dps, reg_id, device, websockets)
    assert_x509_assigned(dps, wire, result, reg_id, device)


@pytest.mark.parametrize("websockets,tool", [pytest.param(False, "openssl", id="mqtt-8883-openssl"),
                                             pytest.param(True, "dps", id="websockets-443-dps-cert")])
def test_s4_3_group_on_root_device_sends_leaf_and_intermediate(dps, wire, certdir, websockets, tool):
    """§4.3: group on a root; the device presents leaf + intermediate (X509(cert_file=chain))."""
    root_f, int_f, dev_f = ((openssl_root, openssl_intermediate, openssl_device) if tool == "openssl"
                            else (dps_root, dps_intermediate, dps_device))
    root = root_f(certdir, uid("py-root"))
    inter = int_f(certdir, uid("py-int"), root)
    reg_id = uid("py-x509-grp")
    device = dev_f(certdir, reg_id, inter)
    assert device.chain.read_text().count("BEGIN CERTIFICATE") == 2
    group_id = uid("py-x509-group")
    x509_group(dps, group_id, cert=root.cert)
    result = register(dps, reg_id, device, websockets)
    assert_x509_assigned(dps, wire, result, reg_id, device, group=(group_id, root.cert))


def test_s4_3_unverified_ca_refused_then_proof_of_possession(dps, wire, certdir):
    """§4.3: a group referencing an unverified CA: the device is refused (CONNACK 0, res/401, 401002, message
    says the CA is not verified); after `dps ca verification-code` + `dps ca verify` it is assigned."""
    root = dps_root(certdir, uid("py-ca-root"))
    ca_name = uid("py-ca")
    up = dps.cli_json("ca", "upload", ca_name, "--certificate-path", str(root.cert))
    assert up["isVerified"] is False, up
    group_id = uid("py-caref-group")
    x509_group(dps, group_id, ca_name=ca_name)
    reg_id = uid("py-x509-caref")
    device = openssl_device(certdir, reg_id, root)

    err = register_error(dps, reg_id, device, websockets=False)
    doc = assert_unauthorized(err, wire, "unverified CA")
    assert re.search(r"not verified", doc["message"], re.I), doc
    assert hub_identity(dps, reg_id) is None
    wire.events.clear()

    code = dps.cli_json("ca", "verification-code", ca_name)["verificationCode"]
    proof = certdir / "proof.pem"
    _run(dps_bin(), "cert", "create-verification", "--ca", root.cert, "--ca-key", root.key, "--code", code,
         "--out", proof)
    dps.cli("ca", "verify", ca_name, "--certificate-path", str(proof))
    assert dps.cli_json("ca", "show", ca_name)["isVerified"] is True

    result = register(dps, reg_id, device, websockets=False)
    assert_x509_assigned(dps, wire, result, reg_id, device, group=(group_id, root.cert))


@pytest.mark.parametrize("websockets", TRANSPORTS)
def test_s4_3_cn_not_the_registration_id_is_refused(dps, wire, certdir, websockets):
    """§4.3: the leaf's CN must be the registration id the SDK sends → otherwise 401002."""
    cn = uid("py-x509-cn")
    other = uid("py-x509-other")
    device = dps_device(certdir, cn)
    x509_enrollment(dps, cn, device.cert)
    err = register_error(dps, other, device, websockets)
    doc = assert_unauthorized(err, wire, "CN != registration id")
    assert cn in doc["message"] and other in doc["message"], doc
