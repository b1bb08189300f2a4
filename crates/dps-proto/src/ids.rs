//! Identifier newtypes: parse, don't validate. A value of these types is known good, so the core never
//! re-checks it (§1.4 registration id rules, §1.1 ID scope shape).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused; the text is meant for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId(pub String);

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidId {}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')
}

/// Checks the DPS identifier rules shared by registration ids and enrollment group ids:
/// 1–128 characters, ASCII alphanumerics plus `-` `.` `_` `:`, the last one alphanumeric or `-`; with
/// `alnum_first`, the first one alphanumeric too (§1.4: the swagger allows no special character at the start
/// of a registration id).
fn check_id(kind: &str, s: &str, alnum_first: bool) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId(format!("{kind} must not be empty")));
    }
    if s.chars().count() > 128 {
        return Err(InvalidId(format!("{kind} is longer than 128 characters")));
    }
    if let Some(bad) = s.chars().find(|c| !is_id_char(*c)) {
        return Err(InvalidId(format!(
            "{kind} '{}' contains the character {bad:?}; only letters, digits and - . _ : are allowed",
            s.escape_debug()
        )));
    }
    if alnum_first && !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(InvalidId(format!("{kind} '{s}' must start with a letter or a digit")));
    }
    let last = s.chars().last().unwrap_or('-');
    if !(last.is_ascii_alphanumeric() || last == '-') {
        return Err(InvalidId(format!("{kind} '{s}' must end with a letter, a digit or '-'")));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $kind:literal, alnum_first: $alnum_first:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id exactly as presented (cryptography uses these bytes, §0.14).
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The case-folded form used for look-ups (ids are case-insensitive, §0.14).
            pub fn key(&self) -> String {
                self.0.to_ascii_lowercase()
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                check_id($kind, &s, $alnum_first)?;
                Ok(Self(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(s: &str) -> Result<Self, InvalidId> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }
        impl Eq for $name {}
    };
}

id_type!(
    /// A device's registration id (§1.4): case-insensitive for look-up, byte-exact for cryptography.
    RegistrationId,
    "registration id",
    alnum_first: true
);
id_type!(
    /// An enrollment group's id (the character rules of registration ids; it may start with `-` `.` `_` `:`,
    /// which Azure does not document either way).
    EnrollmentGroupId,
    "enrollment group id",
    alnum_first: false
);

/// An ID scope in Azure's shape: `0ne` followed by 8 upper-case hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdScope(String);

impl IdScope {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Builds a scope from 4 bytes (the service draws them at random on first start).
    pub fn from_bytes(b: [u8; 4]) -> Self {
        Self(format!("0ne{:02X}{:02X}{:02X}{:02X}", b[0], b[1], b[2], b[3]))
    }
    /// Scopes are compared case-insensitively (devices type them by hand).
    pub fn matches(&self, s: &str) -> bool {
        self.0.eq_ignore_ascii_case(s)
    }
}

impl TryFrom<String> for IdScope {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        // `get`, not indexing: a multi-byte character across byte 3 must be refused, not panic.
        let ok = s.len() == 11
            && s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("0ne"))
            && s.get(3..).is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidId(format!(
                "ID scope '{}' is not in Azure's shape (0ne followed by 8 hexadecimal digits)",
                crate::truncate_for_display(&s).escape_debug()
            )))
        }
    }
}

impl From<IdScope> for String {
    fn from(v: IdScope) -> String {
        v.0
    }
}

impl fmt::Display for IdScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_ids_follow_the_documented_rules() {
        for ok in ["dev1", "a", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "a.b_c:d-", &"x".repeat(128)] {
            assert!(RegistrationId::try_from(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in ["", "dev 1", "dev/1", "dév", "dev.", "dev_", "dev:", &"x".repeat(129), "a%20b"] {
            assert!(RegistrationId::try_from(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn registration_ids_start_with_a_letter_or_a_digit() {
        for ok in ["0dev", "Dev-1", "9", "Z.a_b:c-"] {
            assert!(RegistrationId::try_from(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in ["-dev", ".dev", "_dev", ":dev", "-", "--1"] {
            let e = RegistrationId::try_from(bad).expect_err("a special character first is refused");
            assert!(e.0.contains("must start with a letter or a digit"), "{bad}: {e}");
        }
        // Serde goes through the same rule (device bodies and enrollment documents are parsed with it).
        assert!(serde_json::from_str::<RegistrationId>("\"-dev\"").is_err());
        assert!(serde_json::from_str::<RegistrationId>("\"dev-\"").is_ok());
    }

    #[test]
    fn registration_ids_compare_case_insensitively_but_keep_their_bytes() {
        let a = RegistrationId::try_from("Dev1").expect("converts");
        let b = RegistrationId::try_from("dev1").expect("converts");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Dev1");
        assert_eq!(a.key(), "dev1");
    }

    #[test]
    fn id_scopes_have_azures_shape() {
        assert_eq!(IdScope::from_bytes([0, 1, 0xa2, 0xb3]).as_str(), "0ne0001A2B3");
        assert!(IdScope::try_from("0ne0001A2B3".to_owned()).is_ok());
        for bad in ["0ne0001A2B", "1ne0001A2B3", "0ne0001A2BZ", "", "0ne0001A2B33"] {
            assert!(IdScope::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_id_scope_with_a_character_across_byte_three_is_refused_not_a_panic() {
        // 11 bytes; 'é' spans bytes 2–3, so slicing at byte 3 would panic.
        for bad in ["0né0001A2B", "0n€01A2B3", "éééééé"] {
            assert!(IdScope::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let long = IdScope::try_from("z".repeat(100_000)).expect_err("refused");
        assert!(long.0.len() < 1000, "the message does not echo the whole input");
    }
}
