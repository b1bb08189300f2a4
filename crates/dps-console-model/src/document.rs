//! An enrollment or an enrollment group, seen the same way by the list, detail and form views.

use dps_proto::{AllocationPolicy, AttestationMechanism, AttestationType, EnrollmentGroup, IndividualEnrollment, ProvisioningStatus};

use crate::enrollment_form::{EnrollmentForm, FormKind};

/// An individual enrollment or an enrollment group.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// Boxed: the documents are large and moved around by the views.
    Individual(Box<IndividualEnrollment>),
    Group(Box<EnrollmentGroup>),
}

/// A person's name for an attestation type.
pub fn attestation_label(kind: AttestationType) -> &'static str {
    match kind {
        AttestationType::SymmetricKey => "Symmetric key",
        AttestationType::X509 => "X.509",
        AttestationType::Tpm => "TPM",
        AttestationType::None => "None",
    }
}

/// A secret as the detail view shows it before "reveal": bullets and the length.
pub fn mask_secret(secret: &str) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        format!("•••••••••••• ({} characters)", secret.chars().count())
    }
}

impl Document {
    pub fn kind(&self) -> FormKind {
        match self {
            Self::Individual(_) => FormKind::Individual,
            Self::Group(_) => FormKind::Group,
        }
    }

    /// The registration id or the enrollment group id.
    pub fn id(&self) -> &str {
        match self {
            Self::Individual(e) => &e.registration_id,
            Self::Group(g) => &g.enrollment_group_id,
        }
    }

    pub fn etag(&self) -> Option<&str> {
        match self {
            Self::Individual(e) => e.etag.as_deref(),
            Self::Group(g) => g.etag.as_deref(),
        }
    }

    pub fn attestation(&self) -> &AttestationMechanism {
        match self {
            Self::Individual(e) => &e.attestation,
            Self::Group(g) => &g.attestation,
        }
    }

    /// Enabled unless the document says disabled.
    pub fn enabled(&self) -> bool {
        let s = match self {
            Self::Individual(e) => e.provisioning_status,
            Self::Group(g) => g.provisioning_status,
        };
        s != Some(ProvisioningStatus::Disabled)
    }

    /// The same document with its provisioning status set (for an enable/disable PUT with If-Match).
    pub fn with_enabled(&self, enabled: bool) -> Self {
        let status = Some(if enabled { ProvisioningStatus::Enabled } else { ProvisioningStatus::Disabled });
        match self {
            Self::Individual(e) => {
                Self::Individual(Box::new(IndividualEnrollment { provisioning_status: status, registration_state: None, ..(**e).clone() }))
            }
            Self::Group(g) => Self::Group(Box::new(EnrollmentGroup { provisioning_status: status, ..(**g).clone() })),
        }
    }

    /// The primary and secondary symmetric keys, when the document has them.
    pub fn keys(&self) -> Option<(String, String)> {
        let sk = self.attestation().symmetric_key.as_ref().filter(|_| self.attestation().kind == AttestationType::SymmetricKey)?;
        Some((sk.primary_key.clone().unwrap_or_default(), sk.secondary_key.clone().unwrap_or_default()))
    }

    /// The hubs the document names (`iotHubs`, else the legacy `iotHubHostName`).
    pub fn hubs(&self) -> Vec<String> {
        let (hubs, legacy) = match self {
            Self::Individual(e) => (&e.iot_hubs, &e.iot_hub_host_name),
            Self::Group(g) => (&g.iot_hubs, &g.iot_hub_host_name),
        };
        match (hubs, legacy) {
            (Some(h), _) if !h.is_empty() => h.clone(),
            (_, Some(l)) => vec![l.clone()],
            _ => Vec::new(),
        }
    }

    /// The allocation policy's name, or "service default".
    pub fn policy_label(&self) -> String {
        let p: Option<AllocationPolicy> = match self {
            Self::Individual(e) => e.allocation_policy,
            Self::Group(g) => g.allocation_policy,
        };
        p.map_or_else(|| "service default".to_owned(), |p| p.as_str().to_owned())
    }

    /// When it was last changed.
    pub fn last_updated(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Self::Individual(e) => e.last_updated_date_time_utc,
            Self::Group(g) => g.last_updated_date_time_utc,
        }
    }

    pub fn to_form(&self) -> EnrollmentForm {
        match self {
            Self::Individual(e) => EnrollmentForm::from_enrollment(e),
            Self::Group(g) => EnrollmentForm::from_group(g),
        }
    }

    /// The document as the service sent it, indented.
    pub fn to_json_pretty(&self) -> String {
        match self {
            Self::Individual(e) => serde_json::to_string_pretty(e),
            Self::Group(g) => serde_json::to_string_pretty(g),
        }
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        let e: IndividualEnrollment = serde_json::from_str(
            r#"{"registrationId":"d1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"cA==","secondaryKey":"cw=="}},
                "etag":"\"e\"","iotHubHostName":"legacy.example.net","registrationState":{"status":"assigned"}}"#,
        )
        .expect("parses");
        Document::Individual(Box::new(e))
    }

    #[test]
    fn documents_answer_the_views() {
        let d = doc();
        assert_eq!((d.id(), d.etag(), d.kind()), ("d1", Some("\"e\""), FormKind::Individual));
        assert!(d.enabled());
        let off = d.with_enabled(false);
        assert!(!off.enabled());
        assert!(!off.to_json_pretty().contains("registrationState"), "state is not sent back");
        assert_eq!(off.etag(), Some("\"e\""), "the etag stays for If-Match");
        assert_eq!(d.keys(), Some(("cA==".to_owned(), "cw==".to_owned())));
        assert_eq!(d.hubs(), ["legacy.example.net"]);
        assert_eq!(d.policy_label(), "service default");
        assert_eq!(d.to_form().id, "d1");
        assert_eq!(attestation_label(d.attestation().kind), "Symmetric key");
        assert_eq!(mask_secret("abcd"), "•••••••••••• (4 characters)");
        assert_eq!(mask_secret(""), "");
        let g = Document::Group(Box::new(EnrollmentGroup {
            enrollment_group_id: "g".into(),
            attestation: AttestationMechanism { kind: AttestationType::X509, tpm: None, x509: None, symmetric_key: None },
            capabilities: None,
            iot_hub_host_name: None,
            initial_twin: None,
            etag: None,
            provisioning_status: Some(ProvisioningStatus::Disabled),
            reprovision_policy: None,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
            allocation_policy: Some(AllocationPolicy::GeoLatency),
            iot_hubs: None,
            custom_allocation_definition: None,
            credential_policy_name: None,
            extra: Default::default(),
        }));
        assert!(!g.enabled());
        assert_eq!(g.keys(), None);
        assert_eq!(g.policy_label(), "geoLatency");
        assert!(g.hubs().is_empty());
    }
}
