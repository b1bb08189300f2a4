//! The linked-hub form: plain strings as the inputs hold them, converted to and from `LinkedHub` with one error
//! per field, like [`crate::enrollment_form`].
//!
//! The connection string is write-only: an edit starts with it blank, and a blank one while editing keeps the
//! stored one (the service's rule).

use dps_proto::{HubAllocation, LinkedHub};

use crate::enrollment_form::FieldError;
use crate::validation;

/// Field names, as the form's `field-error` elements carry them in `data-field`.
pub mod field {
    pub const HOST: &str = "host";
    pub const CONNECTOR: &str = "connector";
    pub const WEIGHT: &str = "weight";
    pub const REGION: &str = "region";
    pub const APPLY: &str = "apply";
    pub const CONNECTION_STRING: &str = "connection-string";
    pub const CA: &str = "ca";
}

/// A connector a hub can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connector {
    /// The value the service stores (`LinkedHub::connector`).
    pub value: &'static str,
    pub label: &'static str,
    /// What its connection string is.
    pub hint: &'static str,
}

/// The connectors, the built-in registry first.
pub const CONNECTORS: [Connector; 3] = [
    Connector { value: "builtin", label: "Built-in registry", hint: "not needed: the service keeps the device identities itself" },
    Connector { value: "azureIotHub", label: "Azure IoT Hub", hint: "the hub's connection string (a policy with registry write)" },
    Connector { value: "mosquitto", label: "Mosquitto", hint: "mqtt[s]://user:password@host:port of the dynamic-security admin" },
];

/// A connector's label; an unknown value is shown as it is.
pub fn connector_label(value: &str) -> String {
    CONNECTORS.iter().find(|c| c.value == value).map(|c| c.label.to_string()).unwrap_or_else(|| value.to_string())
}

/// What a connector's connection string is (blank for an unknown connector).
pub fn connector_hint(value: &str) -> &'static str {
    CONNECTORS.iter().find(|c| c.value == value).map(|c| c.hint).unwrap_or_default()
}

/// The weights the service accepts.
pub const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=1000;

const WEIGHT_MESSAGE: &str = "the weight is a whole number from 1 to 1000";

/// The add/edit form's state.
#[derive(Clone, PartialEq)]
pub struct HubForm {
    /// Editing an existing hub (its host name cannot change).
    pub editing: bool,
    pub host: String,
    /// One of [`CONNECTORS`]' values.
    pub connector: String,
    pub weight: String,
    pub region: String,
    pub apply: bool,
    /// Write-only: blank while editing keeps the stored one.
    pub connection_string: String,
    /// PEM of the CA the connector trusts, or blank.
    pub ca: String,
}

/// The connection string is a secret: Debug never shows it.
impl std::fmt::Debug for HubForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubForm")
            .field("editing", &self.editing)
            .field("host", &self.host)
            .field("connector", &self.connector)
            .field("weight", &self.weight)
            .field("region", &self.region)
            .field("apply", &self.apply)
            .field("connection_string", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Default for HubForm {
    /// A new hub: the built-in registry, weight 1, applying the allocation policy.
    fn default() -> Self {
        Self {
            editing: false,
            host: String::new(),
            connector: "builtin".into(),
            weight: "1".into(),
            region: String::new(),
            apply: true,
            connection_string: String::new(),
            ca: String::new(),
        }
    }
}

impl HubForm {
    /// The form editing a listed hub (the connection string and the CA start blank: they are not read back).
    pub fn of(h: &HubAllocation) -> Self {
        Self {
            editing: true,
            host: h.host_name.clone(),
            connector: h.connector.clone(),
            weight: h.allocation_weight.to_string(),
            region: h.region.clone().unwrap_or_default(),
            apply: h.apply_allocation_policy,
            ..Default::default()
        }
    }

    /// Every problem of the form (empty when it would be accepted).
    pub fn errors(&self) -> Vec<FieldError> {
        self.to_hub().err().unwrap_or_default()
    }

    /// The hub to send, or every problem with a field.
    pub fn to_hub(&self) -> Result<LinkedHub, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut problem = |field: &'static str, message: String| errors.push(FieldError { field, message });
        if let Err(e) = validation::hub_host_name(self.host.trim()) {
            problem(field::HOST, e);
        }
        let weight = self.weight.trim().parse::<u32>().ok().filter(|w| WEIGHTS.contains(w));
        if weight.is_none() {
            problem(field::WEIGHT, WEIGHT_MESSAGE.into());
        }
        let cs = self.connection_string.trim();
        if self.connector != "builtin" && cs.is_empty() && !self.editing {
            problem(field::CONNECTION_STRING, format!("{} needs a connection string", connector_label(&self.connector)));
        }
        match weight {
            Some(allocation_weight) if errors.is_empty() => Ok(LinkedHub {
                host_name: self.host.trim().to_string(),
                allocation_weight,
                apply_allocation_policy: self.apply,
                region: Some(self.region.trim().to_string()).filter(|r| !r.is_empty()),
                connector: self.connector.clone(),
                // Blank while editing: the service keeps the stored one.
                connection_string: Some(cs.to_string()).filter(|c| !c.is_empty()),
                ca_certificate: Some(self.ca.trim().to_string()).filter(|c| !c.is_empty()),
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment_form::error_for;

    fn hub(host: &str) -> HubForm {
        HubForm { host: host.into(), ..HubForm::default() }
    }

    fn fields(f: &HubForm) -> Vec<&'static str> {
        f.errors().iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_new_hub_is_the_builtin_registry_with_weight_one_applying_the_policy() {
        let h = hub(" hub-a.dps.local ").to_hub().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(h.host_name, "hub-a.dps.local");
        assert_eq!(h.connector, "builtin");
        assert_eq!(h.allocation_weight, 1);
        assert!(h.apply_allocation_policy);
        assert_eq!(h.region, None);
        assert_eq!(h.connection_string, None);
        assert_eq!(h.ca_certificate, None);
    }

    #[test]
    fn region_connection_string_and_ca_are_trimmed_and_blank_means_unset() {
        let f = HubForm {
            connector: "azureIotHub".into(),
            weight: " 7 ".into(),
            region: " westeurope ".into(),
            apply: false,
            connection_string: " HostName=h;SharedAccessKeyName=k;SharedAccessKey=s ".into(),
            ca: " \n".into(),
            ..hub("hub-b.azure-devices.net")
        };
        let h = f.to_hub().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(h.allocation_weight, 7);
        assert!(!h.apply_allocation_policy);
        assert_eq!(h.region.as_deref(), Some("westeurope"));
        assert_eq!(h.connection_string.as_deref(), Some("HostName=h;SharedAccessKeyName=k;SharedAccessKey=s"));
        assert_eq!(h.ca_certificate, None);
    }

    #[test]
    fn a_bad_host_name_is_refused_with_the_services_message() {
        let f = hub("bad hub!");
        let errors = f.errors();
        assert_eq!(fields(&f), [field::HOST]);
        assert_eq!(error_for(&errors, field::HOST), validation::hub_host_name("bad hub!").err().as_deref());
        assert_eq!(fields(&hub("  ")), [field::HOST]);
    }

    #[test]
    fn the_weight_is_a_whole_number_from_1_to_1000() {
        for bad in ["0", "1001", "-1", "1.5", "", "ten"] {
            let f = HubForm { weight: bad.into(), ..hub("hub-a") };
            assert_eq!(fields(&f), [field::WEIGHT], "weight {bad:?}");
            assert_eq!(error_for(&f.errors(), field::WEIGHT), Some(WEIGHT_MESSAGE));
        }
        for good in ["1", "1000", " 42 "] {
            let f = HubForm { weight: good.into(), ..hub("hub-a") };
            assert!(f.errors().is_empty(), "weight {good:?}");
        }
    }

    #[test]
    fn a_new_hub_with_a_connector_needs_its_connection_string_an_edit_keeps_the_stored_one() {
        for c in ["azureIotHub", "mosquitto"] {
            let f = HubForm { connector: c.into(), ..hub("hub-a") };
            assert_eq!(fields(&f), [field::CONNECTION_STRING]);
            assert_eq!(
                error_for(&f.errors(), field::CONNECTION_STRING),
                Some(format!("{} needs a connection string", connector_label(c)).as_str())
            );
            let edit = HubForm { editing: true, ..f };
            assert_eq!(edit.to_hub().map(|h| h.connection_string), Ok(None));
        }
    }

    #[test]
    fn every_bad_field_is_reported() {
        let f = HubForm { weight: "0".into(), connector: "mosquitto".into(), ..hub("") };
        assert_eq!(fields(&f), [field::HOST, field::WEIGHT, field::CONNECTION_STRING]);
    }

    #[test]
    fn editing_a_listed_hub_starts_from_its_settings_without_secrets() {
        let listed = HubAllocation {
            host_name: "hub-a.dps.local".into(),
            allocation_weight: 3,
            apply_allocation_policy: false,
            region: Some("eastus".into()),
            connector: "mosquitto".into(),
            devices: 12,
        };
        let f = HubForm::of(&listed);
        assert!(f.editing);
        assert_eq!((f.host.as_str(), f.weight.as_str(), f.region.as_str(), f.apply), ("hub-a.dps.local", "3", "eastus", false));
        assert_eq!(f.connector, "mosquitto");
        assert!(f.connection_string.is_empty() && f.ca.is_empty());
        assert!(f.errors().is_empty(), "an unchanged edit is accepted: {:?}", f.errors());
    }

    #[test]
    fn connectors_have_labels_and_hints_and_unknown_ones_show_their_value() {
        assert_eq!(connector_label("builtin"), "Built-in registry");
        assert_eq!(connector_label("custom"), "custom");
        assert!(connector_hint("azureIotHub").contains("connection string"));
        assert_eq!(connector_hint("custom"), "");
    }

    #[test]
    fn debug_never_shows_the_connection_string() {
        let f = HubForm { connection_string: "SharedAccessKey=secret".into(), ..hub("hub-a") };
        assert!(!format!("{f:?}").contains("secret"));
    }
}
