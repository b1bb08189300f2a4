//! The `mosquitto` connector against a REAL Mosquitto broker (≥ 2, dynamic-security plugin), started per
//! test on 127.0.0.1 and free ports in a temporary directory, killed when the test ends. Devices then
//! connect as themselves with rumqttc: what the broker lets them do is the proof (§7.4: the device uses
//! the credential it proved to DPS).
//!
//! Needs the `mosquitto` Debian package (`scripts/setup.sh` installs it); without it the tests fail with
//! a message saying so.

use dps_core::model::EnrollmentRef;
use dps_core::ports::{ConnectorError, HubAuthentication, HubConnector, HubDevice, IdentityOwner};
use dps_crypto::Secret;
use dps_hub::Mosquitto;
use dps_proto::LinkedHub;
use dps_test_mosquitto::{
    connected, free_port, refused, Broker, Device, ExtendedKeyUsagePurpose, QoS, SubscribeReasonCode, ADMIN_PASSWORD,
};

/// The broker as a linked hub whose connector administers it over plain MQTT.
fn hub(broker: &Broker) -> LinkedHub {
    LinkedHub {
        host_name: format!("127.0.0.1:{}", broker.port),
        connector: "mosquitto".into(),
        connection_string: Some(broker.connection_string()),
        ..LinkedHub::default()
    }
}

/// The same over TLS, trusting the broker's CA.
fn tls_hub(broker: &Broker) -> LinkedHub {
    LinkedHub { connection_string: Some(broker.tls_connection_string()), ca_certificate: Some(broker.ca_pem().to_owned()), ..hub(broker) }
}

/// An owner of this test's DPS instance: the enrollment group `group`.
fn owner(group: &str) -> IdentityOwner {
    IdentityOwner { id_scope: "0ne00000001".into(), enrollment: EnrollmentRef::Group(group.into()) }
}

fn sas_device(id: &str, key: &str) -> HubDevice {
    HubDevice {
        device_id: id.into(),
        registration_id: id.into(),
        authentication: HubAuthentication::Sas { primary_key: Secret::new(key), secondary_key: Secret::new(format!("{key}-2")) },
        iot_edge: false,
        initial_twin: None,
        owner: owner("fleet"),
        replaces: None,
    }
}

const KEY_A: &str = "a2V5LW9mLWRldmljZS1hLTAxMjM0NTY3ODlhYmNkZWY=";
const KEY_A2: &str = "bmV3LWtleS1vZi1kZXZpY2UtYS0wMTIzNDU2Nzg5YWI=";
const KEY_B: &str = "a2V5LW9mLWRldmljZS1iLTAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn a_provisioned_device_is_confined_to_its_own_topics() {
    let broker = Broker::start();
    let hub = hub(&broker);
    let c = Mosquitto::new();
    c.check(&hub).expect("check");
    c.provision(&hub, &sas_device("dev-a", KEY_A)).await.expect("provision");
    c.provision(&hub, &sas_device("dev-b", KEY_B)).await.expect("provision");

    // Two sessions of device A: one subscribes to its telemetry, the other publishes there.
    let mut a1 = connected(Device::connect(broker.port, "a1", "dev-a", KEY_A).await, "dev-a");
    let mut a2 = connected(Device::connect(broker.port, "a2", "dev-a", KEY_A).await, "dev-a");
    assert_eq!(a1.subscribe("devices/dev-a/telemetry").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    a2.publish("devices/dev-a/telemetry", "21.5").await;
    assert_eq!(a1.message().await, ("devices/dev-a/telemetry".to_owned(), "21.5".to_owned()));

    // Another device's topics: the subscription is refused in the SUBACK…
    assert_eq!(a1.subscribe("devices/dev-b/#").await, SubscribeReasonCode::Failure);
    assert_eq!(a1.subscribe("#").await, SubscribeReasonCode::Failure);
    // …and a publish there reaches nobody. B subscribes; A publishes into B's topics (the broker has
    // routed, or dropped, it once A has the PUBACK); then B publishes a marker: the first message B
    // receives must be its own marker.
    let mut b = connected(Device::connect(broker.port, "b1", "dev-b", KEY_B).await, "dev-b");
    assert_eq!(b.subscribe("devices/dev-b/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    a2.publish("devices/dev-b/telemetry", "forged by A").await;
    b.publish("devices/dev-b/telemetry", "marker").await;
    assert_eq!(b.message().await, ("devices/dev-b/telemetry".to_owned(), "marker".to_owned()));

    // Wrong password, unknown user: refused at CONNECT.
    refused(Device::connect(broker.port, "a3", "dev-a", KEY_B).await, "dev-a with B's key");
    refused(Device::connect(broker.port, "z", "dev-z", KEY_A).await, "an unprovisioned device");
}

#[tokio::test]
async fn provisioning_again_updates_the_key_and_deprovisioning_locks_the_device_out() {
    let broker = Broker::start();
    let hub = hub(&broker);
    let c = Mosquitto::new();
    c.provision(&hub, &sas_device("dev-a", KEY_A)).await.expect("provision");
    drop(connected(Device::connect(broker.port, "a1", "dev-a", KEY_A).await, "dev-a"));

    // Re-provisioned with a new key (modifyClient / modifyRole): only the new key works.
    c.provision(&hub, &sas_device("dev-a", KEY_A2)).await.expect("provision");
    refused(Device::connect(broker.port, "a2", "dev-a", KEY_A).await, "dev-a with its old key");
    let mut a = connected(Device::connect(broker.port, "a3", "dev-a", KEY_A2).await, "dev-a with its new key");
    assert_eq!(a.subscribe("devices/dev-a/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    drop(a);

    c.deprovision(&hub, "dev-a").await.expect("deprovision");
    refused(Device::connect(broker.port, "a4", "dev-a", KEY_A2).await, "a deprovisioned device");
    // Already gone: still fine.
    c.deprovision(&hub, "dev-a").await.expect("deprovision");
    // The role went with the client: provisioning from scratch works again.
    c.provision(&hub, &sas_device("dev-a", KEY_A)).await.expect("provision");
    drop(connected(Device::connect(broker.port, "a5", "dev-a", KEY_A).await, "dev-a provisioned again"));
}

#[tokio::test]
async fn broker_accounts_it_did_not_create_are_left_alone() {
    let broker = Broker::start();
    let hub = hub(&broker);
    let c = Mosquitto::new();
    let e = c.provision(&hub, &sas_device("admin", KEY_A)).await.err().unwrap_or_else(|| panic!("took over the admin user"));
    assert!(matches!(&e, ConnectorError::Refused(m) if m.contains("did not create")), "{e}");
    let e = c.deprovision(&hub, "admin").await.err().unwrap_or_else(|| panic!("deleted the admin user"));
    assert!(matches!(e, ConnectorError::Refused(_)), "{e}");
    // The admin still works.
    c.provision(&hub, &sas_device("dev-c", KEY_A)).await.expect("provision");
    // Device ids that would escape devices/<id>/# are refused before any MQTT.
    let e = c.provision(&hub, &sas_device("dev/+", KEY_A)).await.err().unwrap_or_else(|| panic!("accepted a wildcard id"));
    assert!(matches!(e, ConnectorError::Refused(_)), "{e}");
}

#[tokio::test]
async fn a_bad_admin_password_is_refused_and_a_dead_broker_unavailable() {
    let broker = Broker::start();
    let mut hub = hub(&broker);
    hub.connection_string = Some(format!("mqtt://admin:wrong@127.0.0.1:{}", broker.port));
    let e = Mosquitto::new().provision(&hub, &sas_device("dev-a", KEY_A)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Refused(m) if m.contains("refused the admin user") && !m.contains("wrong")), "{e}");

    hub.connection_string = Some(format!("mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", free_port()));
    let e = Mosquitto::new().provision(&hub, &sas_device("dev-a", KEY_A)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Unavailable(m) if m.contains("after 3 attempts")), "{e}");
}

#[tokio::test]
async fn over_mqtts_an_x509_device_connects_with_its_certificate_only() {
    let broker = Broker::start();
    let hub = tls_hub(&broker);
    let c = Mosquitto::new();
    c.check(&hub).expect("check");
    let thumb = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let device = HubDevice {
        device_id: "dev-x".into(),
        registration_id: "dev-x".into(),
        authentication: HubAuthentication::SelfSigned { primary_thumbprint: thumb.into(), secondary_thumbprint: thumb.into() },
        iot_edge: false,
        initial_twin: None,
        owner: owner("fleet"),
        replaces: None,
    };
    c.provision(&hub, &device).await.expect("provision");

    let (cert, key) = broker.pki.issue("dev-x", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    let mut x = connected(Device::connect_x509(broker.x509_port, "x1", &broker.ca_path(), &cert, &key).await, "dev-x (certificate)");
    assert_eq!(x.subscribe("devices/dev-x/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(x.subscribe("devices/dev-y/#").await, SubscribeReasonCode::Failure);
    x.publish("devices/dev-x/telemetry", "from a certificate").await;
    assert_eq!(x.message().await.1, "from a certificate");
    // No password was set: the user name alone gets nowhere.
    refused(Device::connect(broker.port, "x2", "dev-x", "").await, "dev-x without a certificate");
    refused(Device::connect(broker.port, "x3", "dev-x", thumb).await, "dev-x with a guessed password");

    // A device that had a key and now proves a certificate loses its password.
    c.provision(&hub, &sas_device("dev-s", KEY_A)).await.expect("provision");
    c.provision(&hub, &HubDevice { device_id: "dev-s".into(), registration_id: "dev-s".into(), ..device.clone() })
        .await
        .expect("provision");
    refused(Device::connect(broker.port, "s1", "dev-s", KEY_A).await, "dev-s with its old key");
    drop(x);

    // Deprovisioned: the broker itself accepts any certificate of its CA at CONNECT (the plugin is not
    // asked with use_identity_as_username), but without its client and role the device may do nothing.
    c.deprovision(&hub, "dev-x").await.expect("deprovision");
    let mut x = connected(Device::connect_x509(broker.x509_port, "x4", &broker.ca_path(), &cert, &key).await, "dev-x after deprovision");
    assert_eq!(x.subscribe("devices/dev-x/#").await, SubscribeReasonCode::Failure);
}

/// Issue #14: a client this service created for another enrollment keeps its password — a device of group H
/// cannot take over the broker account of a device of group G — unless the engine allows the take-over.
#[tokio::test]
async fn a_client_of_another_enrollment_is_not_modified() {
    let broker = Broker::start();
    let hub = hub(&broker);
    let c = Mosquitto::new();
    c.provision(&hub, &HubDevice { owner: owner("g"), ..sas_device("dev-g", KEY_A) }).await.expect("provision");
    let e = c.provision(&hub, &HubDevice { owner: owner("h"), ..sas_device("dev-g", KEY_B) }).await.expect_err("group h took dev-g over");
    assert!(matches!(&e, ConnectorError::NotOwned { owner: Some(o), .. } if *o == owner("g")), "{e}");
    drop(connected(Device::connect(broker.port, "g1", "dev-g", KEY_A).await, "dev-g keeps its key"));
    refused(Device::connect(broker.port, "g2", "dev-g", KEY_B).await, "dev-g with the other enrollment's key");
    // Allowed by the engine (group g was deleted): the client gets the new key and owner.
    let takeover = HubDevice { owner: owner("h"), replaces: Some(owner("g")), ..sas_device("dev-g", KEY_B) };
    c.provision(&hub, &takeover).await.expect("provision");
    drop(connected(Device::connect(broker.port, "g3", "dev-g", KEY_B).await, "dev-g under its new owner"));
    c.provision(&hub, &HubDevice { owner: owner("h"), ..sas_device("dev-g", KEY_B) }).await.expect("provision");
}

/// A TPM device holds its key only in its TPM: the broker (key = password) cannot serve it, and says so
/// before touching the broker (§4.4.3, issue: hub connectors for TPM devices).
#[tokio::test]
async fn tpm_devices_are_refused_with_a_clear_reason() {
    let broker = Broker::start();
    let c = Mosquitto::new();
    let device = HubDevice {
        authentication: HubAuthentication::TpmSas { primary_key: Secret::new(KEY_A), secondary_key: Secret::new(KEY_A2) },
        ..sas_device("tpm-dev", KEY_A)
    };
    let err = c.provision(&hub(&broker), &device).await.expect_err("a TPM device cannot be a broker client");
    assert!(matches!(&err, ConnectorError::Refused(m) if m.contains("TPM")), "{err}");
    refused(Device::connect(broker.port, "t1", "tpm-dev", KEY_A).await, "a TPM device that was never created on the broker");
}
