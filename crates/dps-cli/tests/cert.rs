//! `dps cert` against openssl: what the binary writes verifies with `openssl verify`, and what openssl
//! writes `dps cert inspect` reads (§4.3 X.509 attestation material).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn dps(dir: &Path, args: &[&str]) -> Output {
    run(dir, env!("CARGO_BIN_EXE_dps"), args)
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    ok(run(dir, "openssl", args), &format!("openssl {}", args.join(" ")))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn inspect_json(dir: &Path, files: &[&str]) -> (bool, Value) {
    let mut args = vec!["cert", "inspect", "--output", "json"];
    args.extend_from_slice(files);
    let o = dps(dir, &args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (o.status.success(), v)
}

fn sha1_of(dir: &Path, file: &str) -> String {
    let out = openssl(dir, &["x509", "-noout", "-fingerprint", "-sha1", "-in", file]);
    out.trim().rsplit('=').next().unwrap_or_default().replace(':', "")
}

fn certificates_in(dir: &Path, file: &str) -> usize {
    std::fs::read_to_string(dir.join(file)).expect("reads the file").matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn root_intermediate_device_verify_with_openssl() {
    let d = tempdir();
    let dir = d.path();
    ok(dps(dir, &["cert", "create-root", "--name", "root"]), "create-root");
    ok(
        dps(dir, &["cert", "create-intermediate", "--name", "intermediate", "--ca", "root.pem", "--ca-key", "root.key.pem"]),
        "create-intermediate",
    );
    ok(
        dps(
            dir,
            &["cert", "create-device", "--registration-id", "device-1", "--ca", "intermediate.pem", "--ca-key", "intermediate.key.pem"],
        ),
        "create-device",
    );

    let verified = openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "device-1.pem"]);
    assert_eq!(verified.trim(), "device-1.pem: OK");
    // The device's chain file alone (leaf + intermediate) verifies too.
    openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "device-1.chain.pem", "device-1.pem"]);
    let shown = openssl(dir, &["x509", "-noout", "-subject", "-ext", "extendedKeyUsage,basicConstraints,keyUsage", "-in", "device-1.pem"]);
    assert!(shown.contains("subject=CN = device-1"), "{shown}");
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(shown.contains("CA:FALSE") && shown.contains("Digital Signature"), "{shown}");
    let root = openssl(dir, &["x509", "-noout", "-ext", "basicConstraints,keyUsage", "-in", "root.pem"]);
    assert!(root.contains("CA:TRUE") && root.contains("Certificate Sign, CRL Sign"), "{root}");

    assert_eq!(certificates_in(dir, "intermediate.chain.pem"), 2);
    assert_eq!(certificates_in(dir, "device-1.chain.pem"), 2);
    #[cfg(unix)]
    for key in ["root.key.pem", "intermediate.key.pem", "device-1.key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(key)).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
        // PKCS#8, readable by openssl.
        assert!(std::fs::read_to_string(dir.join(key)).expect("reads the file").starts_with("-----BEGIN PRIVATE KEY-----"));
        openssl(dir, &["pkey", "-noout", "-in", key]);
    }

    let (valid, report) = inspect_json(dir, &["device-1.chain.pem", "root.pem"]);
    assert!(valid, "{report}");
    assert_eq!(report["verdict"]["anchor"], "CN=root");
    assert_eq!(report["certificates"][0]["sha1Thumbprint"], sha1_of(dir, "device-1.pem"));
    assert_eq!(report["certificates"][1]["basicConstraints"]["ca"], true);

    // Existing files are kept unless --force.
    let again = dps(dir, &["cert", "create-root", "--name", "root"]);
    assert!(!again.status.success() && text(&again).contains("--force"), "{}", text(&again));
    ok(dps(dir, &["cert", "create-root", "--name", "root", "--force", "--path-len", "1"]), "create-root --force");
}

#[test]
fn an_openssl_chain_is_inspected_and_its_ca_signs_devices() {
    let d = tempdir();
    let dir = d.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut root = vec!["req", "-x509"];
    root.extend_from_slice(&ec);
    root.extend_from_slice(&[
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-subj",
        "/CN=ossl-root/O=Contoso",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &root);
    std::fs::write(dir.join("int.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n")
        .expect("writes");
    std::fs::write(
        dir.join("dev.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:ossl-device.local,IP:10.1.2.3\n",
    )
    .expect("writes");
    for (name, cn, ca, ext) in [("int", "/CN=ossl-int", "root", "int.ext"), ("dev", "/CN=ossl-device", "int", "dev.ext")] {
        let (key, csr, pem, ca_pem, ca_key) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{ca}.pem"), format!("{ca}.key"));
        let mut req = vec!["req", "-new"];
        req.extend_from_slice(&ec);
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", cn]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "30",
                "-extfile",
                ext,
            ],
        );
    }
    openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "int.pem", "dev.pem"]);

    // Any order after the leaf.
    let (valid, r) = inspect_json(dir, &["dev.pem", "root.pem", "int.pem"]);
    assert!(valid, "{r}");
    assert_eq!(r["verdict"]["valid"], true);
    assert_eq!(r["verdict"]["anchor"], "CN=ossl-root, O=Contoso");
    assert_eq!(r["verdict"]["problems"], serde_json::json!([]));
    let dev = &r["certificates"][0];
    assert_eq!(dev["subject"], "CN=ossl-device");
    assert_eq!(dev["issuer"], "CN=ossl-int");
    assert_eq!(dev["commonName"], "ossl-device");
    assert_eq!(dev["subjectAlternativeNames"], serde_json::json!(["DNS:ossl-device.local", "IP:10.1.2.3"]));
    assert_eq!(dev["keyUsage"], serde_json::json!(["digitalSignature"]));
    assert_eq!(dev["extendedKeyUsage"], serde_json::json!(["clientAuth"]));
    assert_eq!(dev["basicConstraints"], serde_json::json!({ "ca": false }));
    assert_eq!(dev["version"], 3);
    assert_eq!(dev["selfSigned"], false);
    assert_eq!(dev["publicKeyAlgorithm"], "ECDSA P-256");
    assert_eq!(dev["signatureAlgorithm"], "ecdsa-with-SHA256");
    assert_eq!(dev["sha1Thumbprint"], sha1_of(dir, "dev.pem"));
    let serial = openssl(dir, &["x509", "-noout", "-serial", "-in", "dev.pem"]);
    assert_eq!(
        dev["serialNumber"].as_str().map(|s| s.trim_start_matches('0')),
        Some(serial.trim().trim_start_matches("serial=").trim_start_matches('0'))
    );
    assert_eq!(r["certificates"][1]["selfSigned"], true);
    assert_eq!(r["certificates"][1]["keyUsage"], serde_json::json!(["keyCertSign", "cRLSign"]));
    assert_eq!(r["certificates"][2]["basicConstraints"], serde_json::json!({ "ca": true }));

    // Text output names every certificate and the verdict.
    let o = ok(dps(dir, &["cert", "inspect", "dev.pem", "int.pem", "root.pem"]), "inspect");
    assert!(o.contains("Certificate 3 of 3 (root)") && o.contains("DNS:ossl-device.local") && o.contains("Chain: valid"), "{o}");

    // openssl's CA key (PKCS#8) signs a device certificate with `dps cert`; openssl verifies it.
    ok(dps(dir, &["cert", "create-device", "--registration-id", "dps-made", "--ca", "int.pem", "--ca-key", "int.key"]), "create-device");
    openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "int.pem", "dps-made.pem"]);
    // A key that is not the CA's is refused.
    let o = dps(dir, &["cert", "create-device", "--registration-id", "x", "--ca", "int.pem", "--ca-key", "root.key"]);
    assert!(!o.status.success() && text(&o).contains("is not the private key of 'CN=ossl-int'"), "{}", text(&o));
    // So is a certificate that is not a CA.
    let o = dps(dir, &["cert", "create-device", "--registration-id", "y", "--ca", "dev.pem", "--ca-key", "dev.key"]);
    assert!(!o.status.success() && text(&o).contains("not a CA certificate"), "{}", text(&o));
}

#[test]
fn an_expired_device_certificate_fails_inspection() {
    let d = tempdir();
    let dir = d.path();
    ok(dps(dir, &["cert", "create-root", "--name", "root"]), "create-root");
    ok(
        dps(
            dir,
            &["cert", "create-device", "--registration-id", "old-device", "--ca", "root.pem", "--ca-key", "root.key.pem", "--expired"],
        ),
        "create-device",
    );
    let o = dps(dir, &["cert", "inspect", "old-device.chain.pem"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("Chain: INVALID") && t.contains("'CN=old-device' expired at"), "{t}");
    assert!(t.contains("(expired)"), "{t}");
    let (valid, r) = inspect_json(dir, &["old-device.chain.pem"]);
    assert!(!valid);
    assert_eq!(r["verdict"]["valid"], false);
    assert!(r["verdict"]["problems"][0].as_str().unwrap_or_default().contains("expired"), "{r}");
    // openssl agrees.
    let o = run(dir, "openssl", &["verify", "-CAfile", "root.pem", "old-device.pem"]);
    assert!(!o.status.success() && text(&o).contains("certificate has expired"), "{}", text(&o));
}

#[test]
fn a_verification_certificate_carries_the_code_and_verifies_against_the_ca() {
    let d = tempdir();
    let dir = d.path();
    ok(dps(dir, &["cert", "create-root", "--name", "my-ca"]), "create-root");
    let code = "6A1F3C2B9E8D7F60A1B2C3D4E5F60718293A4B5C6D7E8F90";
    ok(
        dps(
            dir,
            &[
                "cert",
                "create-verification",
                "--ca",
                "my-ca.pem",
                "--ca-key",
                "my-ca.key.pem",
                "--code",
                code,
                "--out",
                "pop/verification.pem",
            ],
        ),
        "create-verification",
    );
    let subject = openssl(dir, &["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", "pop/verification.pem"]);
    assert_eq!(subject.trim(), format!("subject=CN={code}"));
    let verified = openssl(dir, &["verify", "-CAfile", "my-ca.pem", "pop/verification.pem"]);
    assert_eq!(verified.trim(), "pop/verification.pem: OK");
    let (valid, r) = inspect_json(dir, &["pop/verification.pem", "my-ca.pem"]);
    assert!(valid, "{r}");
    assert_eq!(r["certificates"][0]["commonName"], code);
}

#[test]
fn a_self_signed_device_certificate_and_bad_ids() {
    let d = tempdir();
    let dir = d.path();
    ok(dps(dir, &["cert", "create-device", "--registration-id", "lonely", "--out-dir", "certs"]), "create-device");
    let subject = openssl(dir, &["x509", "-noout", "-subject", "-issuer", "-in", "certs/lonely.pem"]);
    assert!(subject.contains("subject=CN = lonely") && subject.contains("issuer=CN = lonely"), "{subject}");
    assert_eq!(certificates_in(dir, "certs/lonely.chain.pem"), 1);
    let (valid, r) = inspect_json(dir, &["certs/lonely.pem"]);
    assert!(valid, "{r}");
    assert!(r["verdict"]["notes"][0].as_str().unwrap_or_default().contains("individual enrollment"), "{r}");

    let long = "a".repeat(65);
    let o = dps(dir, &["cert", "create-device", "--registration-id", &long]);
    assert!(!o.status.success() && text(&o).contains("at most 64 characters"), "{}", text(&o));
    let o = dps(dir, &["cert", "create-device", "--registration-id", "bad id!"]);
    assert!(!o.status.success() && text(&o).contains("--registration-id"), "{}", text(&o));
    let o = dps(dir, &["cert", "create-root", "--name", "../escape"]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = dps(dir, &["cert", "inspect", "certs/lonely.key.pem"]);
    assert!(!o.status.success() && text(&o).contains("no CERTIFICATE block"), "{}", text(&o));
}
