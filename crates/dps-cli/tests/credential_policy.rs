//! `dps credential-policy` and `dps device register --csr` against a `dps serve` of its own (#16 item 8): a
//! policy on the local CA, an enrollment naming it, an OpenSSL-made CSR sent by the CLI device over HTTPS and
//! AMQP, the chain written to a file that `openssl verify` accepts against the service's CA, and the issuance log.

mod common;

use std::process::Command;

use common::Serve;
use serde_json::Value;

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let o = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_device_gets_a_certificate_from_the_cli_and_openssl_verifies_it() {
    let s = Serve::start();
    let d = s.data();
    let set = ok(&s.dps(&["credential-policy", "set", "line", "--validity-days", "10", "--key-type", "ecp256", "--output", "json"], None));
    let p: Value = serde_json::from_str(&set).expect("json");
    assert_eq!((p["issuer"].as_str(), p["keyTypes"][0].as_str()), (Some("local"), Some("ecP256")), "{p}");
    ok(&s.dps(&["enrollment", "create", "--enrollment-id", "cli-csr", "--credential-policy", "line"], None));
    let shown = ok(&s.dps(&["enrollment", "show", "--enrollment-id", "cli-csr", "--show-keys", "--output", "json"], None));
    let e: Value = serde_json::from_str(&shown).unwrap_or_else(|err| panic!("{err}: {shown}"));
    assert_eq!(e["credentialPolicyName"], "line");
    let key = e["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();

    openssl(&d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "dev.key"]);
    openssl(&d, &["req", "-new", "-key", "dev.key", "-subj", "/CN=cli-csr", "-out", "dev.csr"]);
    let csr = d.join("dev.csr").to_string_lossy().into_owned();
    for transport in ["https", "amqp"] {
        let out = d.join(format!("{transport}-chain.pem")).to_string_lossy().into_owned();
        let register = [
            "device",
            "register",
            "--attestation",
            "symmetrickey",
            "--transport",
            transport,
            "--registration-id",
            "cli-csr",
            "--key",
            &key,
            "--csr",
            &csr,
            "--certificate-out",
            &out,
        ];
        ok(&s.dps(&register, None));
        let verify =
            Command::new("openssl").current_dir(&d).args(["verify", "-CAfile", "ca.pem", &out]).output().expect("openssl verify runs");
        assert!(String::from_utf8_lossy(&verify.stdout).contains(": OK"), "{}", String::from_utf8_lossy(&verify.stderr));
    }

    let issued: Value =
        serde_json::from_str(&ok(&s.dps(&["credential-policy", "issued", "--registration-id", "cli-csr", "--output", "json"], None)))
            .expect("json");
    assert_eq!(issued.as_array().map(Vec::len), Some(2), "{issued}");
    assert_eq!(issued[0]["keyType"], "ecP256");

    let refused = s.dps(&["credential-policy", "set", "bad", "--validity-days", "0"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("validityDays"), "{}", String::from_utf8_lossy(&refused.stderr));
    ok(&s.dps(&["credential-policy", "delete", "line"], None));
    let listed = ok(&s.dps(&["credential-policy", "list", "--output", "json"], None));
    assert_eq!(listed.trim(), "[]");
}
