//! CONNECT (§2.2): the registration id comes from the user name and must equal the client id; the
//! password is the device's SAS token (symmetric key), absent for X.509. Credentials are verified on each
//! request, so a failure reaches the device as a DPS error (`res/401`, 401002) rather than a bare CONNACK code.

use dps_proto::mqtt::parse_user_name;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};
use rumqttc::mqttbytes::Protocol;

use dps_core::attestation::DeviceCredentials;

/// What a connection knows after CONNECT.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id_scope: String,
    pub registration_id: String,
    pub credentials: DeviceCredentials,
    pub client_version: Option<String>,
    /// The device API version of the user name (`api-version=…`).
    pub api_version: Option<String>,
    pub keep_alive: u16,
    /// The device's address (for `geoLatency`).
    pub source: Option<std::net::IpAddr>,
    /// `mqtt` or `mqtt-ws`.
    pub protocol: &'static str,
}

/// Accepts or refuses a CONNECT; the refusal is the CONNACK return code (§2.2).
/// `client_chain`: the TLS client certificate chain, for X.509 devices (they send no password).
pub fn accept(c: &Connect, client_chain: Option<std::sync::Arc<Vec<Vec<u8>>>>) -> Result<Identity, (ConnectReturnCode, String)> {
    if c.protocol != Protocol::V4 {
        return Err((ConnectReturnCode::RefusedProtocolVersion, "only MQTT 3.1.1 is supported".into()));
    }
    let Some(login) = &c.login else {
        return Err((
            ConnectReturnCode::BadUserNamePassword,
            "CONNECT has no user name ({idScope}/registrations/{registrationId}/api-version=…)".into(),
        ));
    };
    let Some(user) = parse_user_name(&login.username) else {
        return Err((
            ConnectReturnCode::BadUserNamePassword,
            format!("user name '{}' is not {{idScope}}/registrations/{{registrationId}}/…", login.username.escape_debug()),
        ));
    };
    if !c.client_id.eq_ignore_ascii_case(&user.registration_id) {
        return Err((
            ConnectReturnCode::BadClientId,
            format!(
                "client id '{}' is not the registration id '{}' of the user name",
                c.client_id.escape_debug(),
                user.registration_id.escape_debug()
            ),
        ));
    }
    let credentials = match (login.password.trim().is_empty(), client_chain) {
        (false, _) => DeviceCredentials::Sas(login.password.clone()),
        (true, Some(chain)) => DeviceCredentials::X509(chain),
        (true, None) => DeviceCredentials::None,
    };
    Ok(Identity {
        id_scope: user.id_scope,
        registration_id: user.registration_id,
        credentials,
        client_version: user.client_version,
        api_version: user.api_version,
        keep_alive: c.keep_alive,
        source: None,
        protocol: "mqtt",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_plain(c: &Connect) -> Result<Identity, (ConnectReturnCode, String)> {
        accept(c, None)
    }

    fn connect(id: &str, user: Option<&str>, pass: &str) -> Connect {
        let mut c = Connect::new(id);
        if let Some(u) = user {
            c.set_login(u, pass);
        }
        c
    }

    #[test]
    fn connects_are_accepted_or_refused_with_the_right_code() {
        let ok =
            accept_plain(&connect("dev1", Some("0ne0001A2B3/registrations/dev1/api-version=2019-03-31"), "SharedAccessSignature sr=x"));
        assert!(matches!(ok, Ok(Identity { ref registration_id, .. }) if registration_id == "dev1"));
        let x509 = accept_plain(&connect("dev1", Some("0ne0001A2B3/registrations/dev1/api-version=2019-03-31"), ""));
        assert!(matches!(x509, Ok(Identity { credentials: DeviceCredentials::None, .. })));
        assert_eq!(accept_plain(&connect("dev1", None, "")).err().map(|e| e.0), Some(ConnectReturnCode::BadUserNamePassword));
        assert_eq!(accept_plain(&connect("dev1", Some("garbage"), "p")).err().map(|e| e.0), Some(ConnectReturnCode::BadUserNamePassword));
        assert_eq!(
            accept_plain(&connect("dev2", Some("0ne0001A2B3/registrations/dev1/api-version=x"), "p")).err().map(|e| e.0),
            Some(ConnectReturnCode::BadClientId)
        );
    }
}
