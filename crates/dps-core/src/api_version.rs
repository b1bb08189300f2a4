//! What a request's `api-version` changes. Versions are dates, `YYYY-MM-DD` with an optional `-preview`
//! (§1.2, §5.1); any version is accepted (§0), and only these places look at it:
//! - devices speaking ≤ 2018-04-01 keep their hub when their enrollment has no `reprovisionPolicy` (§7.3);
//! - enrollments written through the service API at ≤ 2018-04-01 get no default `reprovisionPolicy` (the
//!   member did not exist yet), so their legacy devices keep that behaviour;
//! - a custom allocation webhook names the service API version whose enrollment schema it receives (§6.1):
//!   2018-09-01-preview (the first with custom allocation) or later.

use std::cmp::Ordering;

/// The last version before re-provisioning policies.
pub const LEGACY_LAST: &str = "2018-04-01";
/// The first version with custom allocation.
pub const WEBHOOK_FIRST: &str = "2018-09-01-preview";

/// An api-version as `(date, preview)`, or `None` if it is not `YYYY-MM-DD[-suffix]`.
fn parse(v: &str) -> Option<(&str, bool)> {
    let date = v.get(..10)?;
    let shape = date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    let rest = v.get(10..)?;
    (shape && (rest.is_empty() || rest.starts_with('-'))).then_some((date, !rest.is_empty()))
}

/// Orders two versions; a preview comes before the stable version of the same date.
fn compare(a: (&str, bool), b: (&str, bool)) -> Ordering {
    a.0.cmp(b.0).then(b.1.cmp(&a.1))
}

/// A device or service API version up to 2018-04-01.
pub fn is_legacy(api_version: Option<&str>) -> bool {
    api_version.and_then(parse).is_some_and(|v| compare(v, (LEGACY_LAST, false)) != Ordering::Greater)
}

/// What a service-API write of an enrollment completes (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schema {
    /// ≤ 2018-04-01: no re-provisioning policy is filled in.
    Legacy,
    #[default]
    Current,
}

impl Schema {
    pub fn of(api_version: Option<&str>) -> Self {
        if is_legacy(api_version) {
            Self::Legacy
        } else {
            Self::Current
        }
    }
}

/// Checks `customAllocationDefinition.apiVersion`: a version, 2018-09-01-preview or later.
pub fn check_webhook_version(v: &str) -> Result<(), String> {
    let parsed = parse(v.trim())
        .ok_or_else(|| format!("customAllocationDefinition.apiVersion '{}' is not an api-version (YYYY-MM-DD)", v.escape_debug()))?;
    if compare(parsed, (&WEBHOOK_FIRST[..10], true)) == Ordering::Less {
        return Err(format!(
            "customAllocationDefinition.apiVersion '{}' predates custom allocation; use {WEBHOOK_FIRST} or later (e.g. 2021-10-01)",
            v.escape_debug()
        ));
    }
    Ok(())
}

/// Whether a device API version knows the register body's `csr` (2025-07-01-preview and later: §1.4). A request
/// without a version does not.
pub fn knows_csr(api_version: Option<&str>) -> bool {
    api_version.and_then(parse).is_some_and(|v| compare(v, ("2025-07-01", true)) != Ordering::Less)
}

/// The enrollment members a webhook of this version receives (§6.1: "the enrollment record serialised in the
/// schema of customAllocationDefinition.apiVersion"). Members a later version added, preview members and
/// members this service does not know are left out of older schemas.
pub fn webhook_members(api_version: &str) -> Vec<&'static str> {
    let mut members = vec![
        "registrationId",
        "enrollmentGroupId",
        "deviceId",
        "attestation",
        "capabilities",
        "iotHubHostName",
        "initialTwin",
        "etag",
        "provisioningStatus",
        "reprovisionPolicy",
        "createdDateTimeUtc",
        "lastUpdatedDateTimeUtc",
        "allocationPolicy",
        "iotHubs",
        "customAllocationDefinition",
    ];
    let v = parse(api_version.trim()).unwrap_or((WEBHOOK_FIRST, true));
    if compare(v, ("2021-10-01", false)) != Ordering::Less {
        members.push("optionalDeviceInformation");
    }
    if v.1 && compare(v, ("2021-11-01", true)) != Ordering::Less {
        members.extend(["clientCertificateIssuancePolicy", "trustBundleId"]);
    }
    if compare(v, ("2025-07-01", true)) != Ordering::Less {
        members.push("credentialPolicyName");
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_versions() {
        for v in ["2018-04-01", "2017-11-15", "2018-03-01-preview", "2018-04-01-preview"] {
            assert!(is_legacy(Some(v)), "{v}");
        }
        for v in ["2018-09-01-preview", "2019-03-31", "2021-06-01", "2025-07-01-preview", "x", "", "2018-4-1"] {
            assert!(!is_legacy(Some(v)), "{v}");
        }
        assert!(!is_legacy(None));
        assert_eq!(Schema::of(Some("2018-04-01")), Schema::Legacy);
        assert_eq!(Schema::of(Some("2021-10-01")), Schema::Current);
    }

    #[test]
    fn webhook_versions() {
        for v in ["2018-09-01-preview", "2018-11-01", "2019-03-31", "2021-10-01", "2025-07-01-preview"] {
            assert!(check_webhook_version(v).is_ok(), "{v}");
        }
        for (v, why) in
            [("2018-04-01", "predates"), ("2018-08-31", "predates"), ("latest", "not an api-version"), ("", "not an api-version")]
        {
            assert!(check_webhook_version(v).is_err_and(|e| e.contains(why)), "{v}");
        }
    }

    #[test]
    fn webhook_schemas_grow_with_the_version() {
        assert!(!webhook_members("2019-03-31").contains(&"optionalDeviceInformation"));
        assert!(webhook_members("2021-10-01").contains(&"optionalDeviceInformation"));
        assert!(!webhook_members("2021-10-01").contains(&"credentialPolicyName"));
        assert!(knows_csr(Some("2025-07-01-preview")) && knows_csr(Some("2026-04-01")) && knows_csr(Some("2026-11-15-preview")));
        assert!(!knows_csr(Some("2021-10-01")) && !knows_csr(Some("2025-06-30")) && !knows_csr(None) && !knows_csr(Some("x")));
        assert!(webhook_members("2021-11-01-preview").contains(&"trustBundleId"));
        assert!(webhook_members("2025-07-01-preview").contains(&"credentialPolicyName"));
    }
}
