//! One abstraction over the two enrollment documents (§5.2–5.3): an individual enrollment and an enrollment group
//! share every member but their id (and the individual's device id and registration state). [`Enrollment`] is
//! what code written once for both — the store, the management layer, the service routes, the CLI and the
//! console's client — needs to know: where the kind lives on the wire ([`EnrollmentKind`]), its id, and the
//! shared members ([`Shared`]).

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::service::*;

/// Which of the two documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrollmentKind {
    Individual,
    Group,
}

impl EnrollmentKind {
    /// The collection's path segment: `/enrollments/{id}`, `/enrollmentGroups/{id}`.
    pub fn collection(self) -> &'static str {
        match self {
            Self::Individual => "enrollments",
            Self::Group => "enrollmentGroups",
        }
    }

    /// The query answer's `x-ms-item-type`.
    pub fn item_type(self) -> &'static str {
        match self {
            Self::Individual => "Enrollment",
            Self::Group => "EnrollmentGroup",
        }
    }

    /// The words for one, in messages: `enrollment`, `enrollment group`.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Individual => "enrollment",
            Self::Group => "enrollment group",
        }
    }

    /// The plural, in messages.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Individual => "enrollments",
            Self::Group => "enrollment groups",
        }
    }

    /// The id's member name: `registrationId`, `enrollmentGroupId`.
    pub fn id_member(self) -> &'static str {
        match self {
            Self::Individual => "registrationId",
            Self::Group => "enrollmentGroupId",
        }
    }
}

/// The members both documents have, borrowed to change.
pub struct Shared<'a> {
    pub attestation: &'a mut AttestationMechanism,
    pub capabilities: &'a mut Option<DeviceCapabilities>,
    pub iot_hub_host_name: &'a mut Option<String>,
    pub initial_twin: &'a mut Option<InitialTwin>,
    pub etag: &'a mut Option<String>,
    pub provisioning_status: &'a mut Option<ProvisioningStatus>,
    pub reprovision_policy: &'a mut Option<ReprovisionPolicy>,
    pub created_date_time_utc: &'a mut Option<DateTime<Utc>>,
    pub last_updated_date_time_utc: &'a mut Option<DateTime<Utc>>,
    pub allocation_policy: &'a mut Option<AllocationPolicy>,
    pub iot_hubs: &'a mut Option<Vec<String>>,
    pub custom_allocation_definition: &'a mut Option<CustomAllocationDefinition>,
    pub credential_policy_name: &'a mut Option<String>,
    pub extra: &'a mut Map<String, Value>,
}

/// An individual enrollment or an enrollment group.
pub trait Enrollment: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: EnrollmentKind;
    /// The bulk operation's body (`POST /enrollments`, `POST /enrollmentGroups`).
    type Bulk: Serialize + DeserializeOwned + Send + 'static;

    /// A document with its id and attestation, every other member absent.
    fn new(id: String, attestation: AttestationMechanism) -> Self;
    fn id(&self) -> &str;
    fn attestation(&self) -> &AttestationMechanism;
    fn etag(&self) -> Option<&str>;
    fn shared(&mut self) -> Shared<'_>;
    /// A bulk operation's mode and documents.
    fn bulk_items(op: Self::Bulk) -> (BulkMode, Vec<Self>);
    /// A bulk operation of `items`.
    fn bulk_of(mode: BulkMode, items: Vec<Self>) -> Self::Bulk;
    /// A bulk operation's number of documents (without taking it apart).
    fn bulk_len(op: &Self::Bulk) -> usize;
}

/// The accessors are the same for both types (the members have the same names); only the id and bulk differ.
macro_rules! enrollment {
    ($ty:ident, $kind:ident, $id:ident, $bulk:ty, $items:ident $(, $own:ident)*) => {
        impl Enrollment for $ty {
            const KIND: EnrollmentKind = EnrollmentKind::$kind;
            type Bulk = $bulk;

            fn new(id: String, attestation: AttestationMechanism) -> Self {
                $ty {
                    $id: id,
                    $($own: None,)*
                    attestation,
                    capabilities: None,
                    iot_hub_host_name: None,
                    initial_twin: None,
                    etag: None,
                    provisioning_status: None,
                    reprovision_policy: None,
                    created_date_time_utc: None,
                    last_updated_date_time_utc: None,
                    allocation_policy: None,
                    iot_hubs: None,
                    custom_allocation_definition: None,
                    credential_policy_name: None,
                    extra: Map::new(),
                }
            }

            fn id(&self) -> &str {
                &self.$id
            }
            fn attestation(&self) -> &AttestationMechanism {
                &self.attestation
            }
            fn etag(&self) -> Option<&str> {
                self.etag.as_deref()
            }
            fn shared(&mut self) -> Shared<'_> {
                Shared {
                    attestation: &mut self.attestation,
                    capabilities: &mut self.capabilities,
                    iot_hub_host_name: &mut self.iot_hub_host_name,
                    initial_twin: &mut self.initial_twin,
                    etag: &mut self.etag,
                    provisioning_status: &mut self.provisioning_status,
                    reprovision_policy: &mut self.reprovision_policy,
                    created_date_time_utc: &mut self.created_date_time_utc,
                    last_updated_date_time_utc: &mut self.last_updated_date_time_utc,
                    allocation_policy: &mut self.allocation_policy,
                    iot_hubs: &mut self.iot_hubs,
                    custom_allocation_definition: &mut self.custom_allocation_definition,
                    credential_policy_name: &mut self.credential_policy_name,
                    extra: &mut self.extra,
                }
            }
            fn bulk_items(op: $bulk) -> (BulkMode, Vec<Self>) {
                (op.mode, op.$items)
            }
            fn bulk_of(mode: BulkMode, items: Vec<Self>) -> $bulk {
                <$bulk>::from_parts(mode, items)
            }
            fn bulk_len(op: &$bulk) -> usize {
                op.$items.len()
            }
        }
    };
}

impl BulkEnrollmentOperation {
    fn from_parts(mode: BulkMode, enrollments: Vec<IndividualEnrollment>) -> Self {
        Self { enrollments, mode }
    }
}

impl BulkEnrollmentGroupOperation {
    fn from_parts(mode: BulkMode, enrollment_groups: Vec<EnrollmentGroup>) -> Self {
        Self { enrollment_groups, mode }
    }
}

enrollment!(
    IndividualEnrollment,
    Individual,
    registration_id,
    BulkEnrollmentOperation,
    enrollments,
    device_id,
    registration_state,
    optional_device_information
);
enrollment!(EnrollmentGroup, Group, enrollment_group_id, BulkEnrollmentGroupOperation, enrollment_groups);

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> EnrollmentGroup {
        EnrollmentGroup::new("g1".into(), AttestationMechanism::symmetric_key(None, None))
    }

    #[test]
    fn each_kind_names_its_collection_and_id() {
        assert_eq!((IndividualEnrollment::KIND.collection(), EnrollmentGroup::KIND.collection()), ("enrollments", "enrollmentGroups"));
        assert_eq!(EnrollmentGroup::KIND.item_type(), "EnrollmentGroup");
        assert_eq!(group().id(), "g1");
        let e = IndividualEnrollment::new("d1".into(), AttestationMechanism::symmetric_key(None, None));
        assert_eq!(
            serde_json::to_value(&e).ok(),
            Some(serde_json::json!({ "registrationId": "d1", "attestation": { "type": "symmetricKey", "symmetricKey": {} } }))
        );
    }

    #[test]
    fn shared_members_change_the_document_and_bulk_round_trips() {
        let mut g = group();
        *g.shared().iot_hubs = Some(vec!["h".into()]);
        *g.shared().etag = Some("e".into());
        assert_eq!((g.iot_hubs.as_deref(), g.etag()), (Some(&["h".to_owned()][..]), Some("e")));
        let op = EnrollmentGroup::bulk_of(BulkMode::Create, vec![g.clone()]);
        assert_eq!(EnrollmentGroup::bulk_len(&op), 1);
        assert_eq!(EnrollmentGroup::bulk_items(op), (BulkMode::Create, vec![g]));
    }
}
