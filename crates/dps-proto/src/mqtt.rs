//! The MQTT binding's strings as pure functions (§2): the CONNECT user name, the request topics a device
//! publishes on, and the response topic layout every SDK parses.

use percent_encoding::percent_decode_str;

/// The one subscription filter DPS accepts (§2.3).
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
const REGISTER_PREFIX: &str = "$dps/registrations/PUT/iotdps-register/";
const STATUS_PREFIX: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";

/// What the CONNECT user name says: `{idScope}/registrations/{registrationId}/api-version=…&ClientVersion=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUserName {
    pub id_scope: String,
    pub registration_id: String,
    pub api_version: Option<String>,
    pub client_version: Option<String>,
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Parses the user name leniently (§2.2): locate `/registrations/`, take the next segment as the
/// registration id, read the rest as an `&`-separated query; `ClientVersion` is optional.
pub fn parse_user_name(user: &str) -> Option<MqttUserName> {
    let (scope, rest) = user.split_once("/registrations/")?;
    let (id, query) = rest.split_once('/').unwrap_or((rest, ""));
    if scope.is_empty() || id.is_empty() {
        return None;
    }
    let mut out = MqttUserName { id_scope: decode(scope), registration_id: decode(id), api_version: None, client_version: None };
    for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            k if k.eq_ignore_ascii_case("api-version") => out.api_version = Some(decode(v)),
            k if k.eq_ignore_ascii_case("ClientVersion") => out.client_version = Some(decode(v)),
            _ => {}
        }
    }
    Some(out)
}

/// A request a device publishes (§2.4). `rid` is kept exactly as received (it is echoed, §0.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttRequest {
    Register { rid: String },
    OperationStatus { rid: String, operation_id: String },
}

fn query_of(rest: &str) -> Option<Vec<(&str, &str)>> {
    let q = rest.strip_prefix('?')?;
    Some(q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect())
}

/// Parses a request topic; `None` for anything else, and for a `$rid` longer than
/// [`crate::MAX_REQUEST_ID_CHARS`] or an `operationId` longer than [`crate::MAX_OPERATION_ID_CHARS`] (the
/// `$rid` is echoed in the response topic; neither may make a session hold or send more than a bound).
pub fn parse_request_topic(topic: &str) -> Option<MqttRequest> {
    let rid_of = |q: &[(&str, &str)]| {
        let rid = q.iter().find(|(k, _)| *k == "$rid")?.1;
        (rid.chars().count() <= crate::MAX_REQUEST_ID_CHARS).then(|| rid.to_owned())
    };
    if let Some(rest) = topic.strip_prefix(REGISTER_PREFIX) {
        let q = query_of(rest)?;
        return Some(MqttRequest::Register { rid: rid_of(&q)? });
    }
    if let Some(rest) = topic.strip_prefix(STATUS_PREFIX) {
        let q = query_of(rest)?;
        let operation_id = decode(q.iter().find(|(k, _)| *k == "operationId")?.1);
        if operation_id.chars().count() > crate::MAX_OPERATION_ID_CHARS {
            return None;
        }
        return Some(MqttRequest::OperationStatus { rid: rid_of(&q)?, operation_id });
    }
    None
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]`: `$rid` first, `retry-after` lower case,
/// no other `$` (§0.5, §2.5).
pub fn response_topic(status: u16, rid: &str, retry_after: Option<u32>) -> String {
    match retry_after {
        Some(n) => format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={n}"),
        None => format!("$dps/registrations/res/{status}/?$rid={rid}"),
    }
}

/// Request topics as devices build them (for DPS Console's own device side and tests).
pub fn register_topic(rid: &str) -> String {
    format!("{REGISTER_PREFIX}?$rid={rid}")
}

pub fn operation_status_topic(rid: &str, operation_id: &str) -> String {
    format!("{STATUS_PREFIX}?$rid={rid}&operationId={operation_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_of_every_sdk_parse() {
        let cases = [
            ("0ne0001A2B3/registrations/dev1/api-version=2021-06-01&ClientVersion=1.15.0", Some("1.15.0")),
            ("0ne0001A2B3/registrations/dev1/api-version=2019-03-31", None),
            (
                "0ne0001A2B3/registrations/dev1/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%28x%29",
                Some("azure-iot-device-provisioning-py/2.14.0(x)"),
            ),
            ("0ne0001A2B3/registrations/dev1/api-version=2019-03-31&ClientVersion=2019-03-31", Some("2019-03-31")),
        ];
        for (u, cv) in cases {
            let p = parse_user_name(u).unwrap_or_else(|| panic!("{u}"));
            assert_eq!((p.id_scope.as_str(), p.registration_id.as_str()), ("0ne0001A2B3", "dev1"), "{u}");
            assert_eq!(p.client_version.as_deref(), cv, "{u}");
            assert!(p.api_version.is_some());
        }
        assert_eq!(parse_user_name("0ne0001A2B3/registrations/dev1").map(|p| p.registration_id), Some("dev1".into()));
        for bad in ["", "dev1", "0ne/registrations/", "/registrations/dev1", "0ne0001A2B3/devices/dev1"] {
            assert!(parse_user_name(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn request_topics_parse_and_keep_rid_verbatim() {
        assert_eq!(parse_request_topic("$dps/registrations/PUT/iotdps-register/?$rid=2"), Some(MqttRequest::Register { rid: "2".into() }));
        assert_eq!(
            parse_request_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationId=4.a%2Eb.c"),
            Some(MqttRequest::OperationStatus { rid: "3".into(), operation_id: "4.a.b.c".into() })
        );
        assert_eq!(
            parse_request_topic("$dps/registrations/PUT/iotdps-register/?$rid=a%2Db"),
            Some(MqttRequest::Register { rid: "a%2Db".into() })
        );
        for bad in [
            "$dps/registrations/PUT/iotdps-register/",
            "$dps/registrations/PUT/iotdps-register/?rid=1",
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3",
            "devices/x/messages/events/",
            "$dps/registrations/res/200/?$rid=1",
        ] {
            assert_eq!(parse_request_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn over_long_request_ids_and_operation_ids_are_not_requests() {
        let rid = "1".repeat(crate::MAX_REQUEST_ID_CHARS);
        assert_eq!(parse_request_topic(&register_topic(&rid)), Some(MqttRequest::Register { rid: rid.clone() }));
        let long = "1".repeat(crate::MAX_REQUEST_ID_CHARS + 1);
        assert_eq!(parse_request_topic(&register_topic(&long)), None);
        assert_eq!(parse_request_topic(&operation_status_topic(&long, "4.a.b")), None);
        let op = "o".repeat(crate::MAX_OPERATION_ID_CHARS + 1);
        assert_eq!(parse_request_topic(&operation_status_topic("1", &op)), None);
        assert!(parse_request_topic(&operation_status_topic("1", &"o".repeat(crate::MAX_OPERATION_ID_CHARS))).is_some());
    }

    #[test]
    fn response_topics_have_the_layout_every_sdk_parses() {
        let t = response_topic(202, "7f3a", Some(3));
        assert_eq!(t, "$dps/registrations/res/202/?$rid=7f3a&retry-after=3");
        assert_eq!(t.matches('$').count(), 2, "Python splits on '$'");
        assert_eq!(response_topic(200, "1", None), "$dps/registrations/res/200/?$rid=1");
    }
}
