//! Service-API authorisation (§5.1): a SharedAccessSignature whose `skn` names a shared access policy,
//! signed with its primary or secondary key, for an audience that is one of the service's host names, with
//! the right the operation needs.

use dps_crypto::{decode_key, SasToken};

use crate::error::{DpsError, ErrorKind};
use crate::model::{AccessPolicy, Right};
use crate::Clock;

/// Checks `authorization` against the policies. `host_names` are every name the service answers to.
pub fn authorize(
    authorization: Option<&str>,
    policies: &[AccessPolicy],
    host_names: &[String],
    right: Right,
    clock: &dyn Clock,
) -> Result<String, DpsError> {
    let header = authorization.ok_or_else(|| {
        DpsError::unauthorized("missing Authorization header: sign a SharedAccessSignature with a shared access policy key")
    })?;
    let token = SasToken::parse(header).map_err(|e| DpsError::unauthorized(format!("invalid SharedAccessSignature: {e}")))?;
    let resource = token.resource().map_err(|e| DpsError::unauthorized(format!("invalid SharedAccessSignature: {e}")))?;
    let host = audience_host(&resource);
    if !host_names.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(DpsError::unauthorized(format!(
            "the token's audience '{resource}' is not this service (expected one of: {})",
            host_names.join(", ")
        )));
    }
    let now = u64::try_from(clock.now().timestamp()).unwrap_or(0);
    if token.expiry() < now {
        return Err(DpsError::unauthorized(format!("the SAS token expired at {}", token.expiry())));
    }
    let name = token.key_name().unwrap_or_default();
    let policy = policies
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| DpsError::unauthorized(format!("no shared access policy named '{}'", name.escape_debug())))?;
    let verified =
        [&policy.primary_key, &policy.secondary_key].iter().any(|k| decode_key(k.expose()).map(|b| token.verify(&b)).unwrap_or(false));
    if !verified {
        return Err(DpsError::unauthorized(format!("the token is not signed with a key of policy '{}'", policy.name)));
    }
    if !policy.rights.contains(&right) {
        return Err(DpsError::new(
            ErrorKind::Forbidden,
            format!("policy '{}' does not have the {} right this operation needs", policy.name, right.as_str()),
        ));
    }
    Ok(policy.name.clone())
}

/// The host of an audience: scheme, port and path removed (`https://h:443/x` → `h`).
fn audience_host(resource: &str) -> &str {
    let r = resource.split_once("://").map_or(resource, |(_, rest)| rest);
    let r = r.split('/').next().unwrap_or(r);
    if let Some(v6) = r.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match r.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;
    use dps_crypto::Secret;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn setup() -> (Vec<AccessPolicy>, Vec<String>, ManualClock) {
        let p = AccessPolicy {
            name: "provisioningserviceowner".into(),
            primary_key: Secret::new(KEY),
            secondary_key: Secret::new(dps_crypto::generate_key()),
            rights: vec![Right::EnrollmentRead],
        };
        let clock = ManualClock::new(chrono::Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default());
        (vec![p], vec!["localhost".into(), "127.0.0.1".into()], clock)
    }

    fn token(sr: &str, se: u64, skn: &str) -> String {
        let key = decode_key(KEY).expect("decodes the key");
        let sig = dps_crypto::sign(&key, sr, se);
        format!("SharedAccessSignature sr={sr}&sig={}&se={se}&skn={skn}", sig.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"))
    }

    #[test]
    fn a_token_for_any_host_name_with_the_right_is_accepted() {
        let (p, h, c) = setup();
        for sr in ["localhost", "127.0.0.1%3A4443", "127.0.0.1:4443", "https%3A%2F%2Flocalhost%2Fenrollments"] {
            let t = token(sr, 1_700_000_100, "provisioningserviceowner");
            assert_eq!(authorize(Some(&t), &p, &h, Right::EnrollmentRead, &c).as_deref(), Ok("provisioningserviceowner"), "{sr}");
        }
        // Node's service SDK sends milliseconds.
        let t = token("localhost", 1_700_000_100_000, "provisioningserviceowner");
        assert!(authorize(Some(&t), &p, &h, Right::EnrollmentRead, &c).is_ok());
    }

    #[test]
    fn wrong_host_policy_key_expiry_or_right_is_refused() {
        let (p, h, c) = setup();
        let cases = [
            (token("evil.example", 1_700_000_100, "provisioningserviceowner"), Right::EnrollmentRead, 401002),
            (token("localhost", 1_600_000_000, "provisioningserviceowner"), Right::EnrollmentRead, 401002),
            (token("localhost", 1_700_000_100, "nobody"), Right::EnrollmentRead, 401002),
            (token("localhost", 1_700_000_100, "provisioningserviceowner"), Right::EnrollmentWrite, 401003),
        ];
        for (t, r, code) in cases {
            assert_eq!(authorize(Some(&t), &p, &h, r, &c).map_err(|e| e.code()), Err(code), "{t}");
        }
        assert!(authorize(None, &p, &h, Right::EnrollmentRead, &c).is_err());
        let forged = token("localhost", 1_700_000_100, "provisioningserviceowner").replace("se=1700000100", "se=1800000000");
        assert!(authorize(Some(&forged), &p, &h, Right::EnrollmentRead, &c).is_err());
    }
}
