//! The query language of `POST /enrollments/query` and `POST /enrollmentGroups/query` (§5.2): a pure parser of
//! the subset DPS Console understands, so that nothing unsupported silently returns everything.
//!
//! Understood: an empty query or `*` (everything, as Azure CLI and Java's builder send), and
//! `SELECT * FROM enrollments` / `SELECT * FROM enrollmentGroups` (keywords and names case-insensitive) with an
//! optional `WHERE` of `field = literal` comparisons joined by `AND`. Literals are strings in single or double
//! quotes (`\` escapes the next character) and `true` / `false`. The fields are the top-level members of
//! [`Field`] plus `attestation.type` and `capabilities.iotEdge`. Anything else (`OR`, `NOT`, `LIKE`, `IN`, `<`,
//! functions, projections, `ORDER BY`, `TOP`, another collection) is refused with a message naming it.
//!
//! The filter is applied by the store in the query itself (dps-store `query_entities`), so paging, the
//! continuation token and the total count stay those of the filtered result.

use crate::DpsError;

/// Which endpoint is queried; it fixes the collection name after `FROM` and the fields that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Enrollments,
    EnrollmentGroups,
}

impl From<dps_proto::EnrollmentKind> for Collection {
    fn from(kind: dps_proto::EnrollmentKind) -> Self {
        match kind {
            dps_proto::EnrollmentKind::Individual => Self::Enrollments,
            dps_proto::EnrollmentKind::Group => Self::EnrollmentGroups,
        }
    }
}

impl Collection {
    pub fn name(self) -> &'static str {
        match self {
            Self::Enrollments => "enrollments",
            Self::EnrollmentGroups => "enrollmentGroups",
        }
    }
}

/// A field a `WHERE` may compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    RegistrationId,
    DeviceId,
    EnrollmentGroupId,
    ProvisioningStatus,
    IotHubHostName,
    AllocationPolicy,
    AttestationType,
    IotEdge,
}

impl Field {
    const ALL: [Field; 8] = [
        Self::RegistrationId,
        Self::DeviceId,
        Self::EnrollmentGroupId,
        Self::ProvisioningStatus,
        Self::IotHubHostName,
        Self::AllocationPolicy,
        Self::AttestationType,
        Self::IotEdge,
    ];

    /// The member's name in the JSON document.
    pub fn name(self) -> &'static str {
        match self {
            Self::RegistrationId => "registrationId",
            Self::DeviceId => "deviceId",
            Self::EnrollmentGroupId => "enrollmentGroupId",
            Self::ProvisioningStatus => "provisioningStatus",
            Self::IotHubHostName => "iotHubHostName",
            Self::AllocationPolicy => "allocationPolicy",
            Self::AttestationType => "attestation.type",
            Self::IotEdge => "capabilities.iotEdge",
        }
    }

    fn exists_in(self, c: Collection) -> bool {
        match self {
            Self::RegistrationId | Self::DeviceId => c == Collection::Enrollments,
            Self::EnrollmentGroupId => c == Collection::EnrollmentGroups,
            _ => true,
        }
    }

    fn is_bool(self) -> bool {
        self == Self::IotEdge
    }

    /// Whether values compare case-insensitively: ids (§0.14), host names and enum strings. `deviceId` is
    /// compared exactly (IoT Hub device ids are case-sensitive).
    pub fn case_insensitive(self) -> bool {
        self != Self::DeviceId
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Bool(bool),
}

/// `field = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub field: Field,
    pub value: Literal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Star,
    Eq,
    /// Any other operator or punctuation, as written.
    Other(String),
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("'{w}'"),
        Token::Str(s) => format!("the string '{s}'"),
        Token::Star => "'*'".into(),
        Token::Eq => "'='".into(),
        Token::Other(o) => format!("'{o}'"),
    }
}

fn invalid(m: impl Into<String>) -> DpsError {
    DpsError::invalid(format!("unsupported query: {}", m.into()))
}

fn tokenize(text: &str) -> Result<Vec<Token>, DpsError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_alphanumeric() || c == '_' || c == '$' || c == '@' {
            let mut w = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_alphanumeric() || matches!(d, '_' | '$' | '@' | '.') {
                    w.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token::Word(w));
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut s = String::new();
            let mut closed = false;
            while let Some(d) = chars.next() {
                if d == '\\' {
                    match chars.next() {
                        Some(e) => s.push(e),
                        None => break,
                    }
                } else if d == c {
                    closed = true;
                    break;
                } else {
                    s.push(d);
                }
            }
            if !closed {
                return Err(invalid(format!("a string literal is not closed (missing {c})")));
            }
            out.push(Token::Str(s));
        } else if c == '*' {
            chars.next();
            out.push(Token::Star);
        } else if c == '=' {
            chars.next();
            out.push(Token::Eq);
        } else {
            chars.next();
            let mut o = c.to_string();
            // Two-character operators, named whole in the message.
            if let Some(&d) = chars.peek() {
                if matches!((c, d), ('<', '=') | ('>', '=') | ('<', '>') | ('!', '=')) {
                    o.push(d);
                    chars.next();
                }
            }
            out.push(Token::Other(o));
        }
    }
    Ok(out)
}

fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

const KEYWORDS: [&str; 16] =
    ["OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL", "ORDER", "GROUP", "BY", "TOP", "JOIN", "AS", "VALUE", "DISTINCT", "OFFSET"];

/// Parses a query for `collection`. `Ok(vec![])` means everything; otherwise every condition must hold.
pub fn parse(text: &str, collection: Collection) -> Result<Vec<Condition>, DpsError> {
    let tokens = tokenize(text)?;
    let mut it = tokens.iter();
    match tokens.as_slice() {
        [] | [Token::Star] => return Ok(Vec::new()),
        _ => {}
    }
    let expected = format!("SELECT * FROM {}", collection.name());
    if !is_kw(it.next(), "SELECT") {
        return Err(invalid(format!("a query is '{expected}', optionally followed by WHERE")));
    }
    match it.next() {
        Some(Token::Star) => {}
        Some(t) => return Err(invalid(format!("only SELECT * is supported, not a projection or keyword starting with {}", describe(t)))),
        None => return Err(invalid(format!("the query ends after SELECT; expected '{expected}'"))),
    }
    if !is_kw(it.next(), "FROM") {
        return Err(invalid(format!("expected FROM after SELECT *; the query is '{expected}'")));
    }
    match it.next() {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case(collection.name()) => {}
        Some(t) => {
            return Err(invalid(format!(
                "{} is not a collection of this endpoint; it queries {} ('{expected}')",
                describe(t),
                collection.name()
            )))
        }
        None => return Err(invalid(format!("the query ends after FROM; expected '{expected}'"))),
    }
    match it.next() {
        None => return Ok(Vec::new()),
        Some(t) if is_kw(Some(t), "WHERE") => {}
        Some(t) => {
            return Err(invalid(format!(
                "{} after FROM {} is not supported; only WHERE with = comparisons joined by AND is",
                describe(t),
                collection.name()
            )))
        }
    }
    let mut conditions = Vec::new();
    loop {
        conditions.push(condition(&mut it, collection)?);
        match it.next() {
            None => return Ok(conditions),
            Some(t) if is_kw(Some(t), "AND") => {}
            Some(t) if is_kw(Some(t), "OR") => {
                return Err(invalid("OR is not supported; only comparisons joined by AND are"));
            }
            Some(t) => return Err(invalid(format!("{} is not supported; conditions are joined by AND", describe(t)))),
        }
    }
}

fn condition<'a>(it: &mut impl Iterator<Item = &'a Token>, collection: Collection) -> Result<Condition, DpsError> {
    let name = match it.next() {
        Some(Token::Word(w)) if KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
            return Err(invalid(format!("{} is not supported in WHERE; only field = value joined by AND is", w.to_ascii_uppercase())))
        }
        Some(Token::Word(w)) => w,
        Some(Token::Other(o)) if o == "(" => return Err(invalid("parentheses are not supported in WHERE")),
        Some(t) => return Err(invalid(format!("expected a field name in WHERE, found {}", describe(t)))),
        None => return Err(invalid("the query ends where a condition was expected")),
    };
    let supported = || Field::ALL.iter().filter(|f| f.exists_in(collection)).map(|f| f.name()).collect::<Vec<_>>().join(", ");
    let field = match it.next() {
        Some(Token::Other(o)) if o == "(" => return Err(invalid(format!("functions such as {name}() are not supported"))),
        Some(Token::Eq) => Field::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name) && f.exists_in(collection))
            .ok_or_else(|| invalid(format!("'{name}' cannot be filtered on {}; the fields are {}", collection.name(), supported())))?,
        Some(Token::Word(w)) if KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
            return Err(invalid(format!("the operator {} is not supported; only = is", w.to_ascii_uppercase())))
        }
        Some(Token::Other(o)) => return Err(invalid(format!("the operator '{o}' is not supported; only = is"))),
        Some(t) => return Err(invalid(format!("expected = after '{name}', found {}", describe(t)))),
        None => return Err(invalid(format!("the query ends after '{name}'; expected = and a value"))),
    };
    let value = match it.next() {
        Some(Token::Str(s)) => Literal::Str(s.clone()),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => return Err(invalid("null is not supported as a value")),
        Some(t) => return Err(invalid(format!("{} is not a supported value; use a quoted string or true/false", describe(t)))),
        None => return Err(invalid(format!("the query ends after '{} ='; expected a value", field.name()))),
    };
    match (&value, field.is_bool()) {
        (Literal::Bool(_), false) => Err(invalid(format!("{} is compared with a quoted string, not true/false", field.name()))),
        (Literal::Str(_), true) => Err(invalid(format!("{} is compared with true or false, not a string", field.name()))),
        _ => Ok(Condition { field, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn ok(q: &str, c: Collection) -> Vec<Condition> {
        parse(q, c).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn refused(q: &str, c: Collection, says: &str) {
        let e = parse(q, c).expect_err("the query is unsupported");
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{q}");
        assert!(e.message.contains(says), "{q}: '{}' should mention '{says}'", e.message);
    }

    fn s(f: Field, v: &str) -> Condition {
        Condition { field: f, value: Literal::Str(v.into()) }
    }

    #[test]
    fn everything_is_selected_as_before() {
        for q in ["", "  ", "*", "SELECT * FROM enrollments", "select * from ENROLLMENTS", " Select *  From enrollments "] {
            assert_eq!(ok(q, Collection::Enrollments), vec![], "{q}");
        }
        assert_eq!(ok("SELECT * FROM enrollmentGroups", Collection::EnrollmentGroups), vec![]);
        assert_eq!(ok("select * from enrollmentgroups", Collection::EnrollmentGroups), vec![]);
    }

    #[test]
    fn where_equalities_joined_by_and() {
        let c = ok(
            "SELECT * FROM enrollments WHERE registrationId = 'dev-1' and provisioningStatus=\"disabled\" AND capabilities.iotEdge = TRUE",
            Collection::Enrollments,
        );
        assert_eq!(
            c,
            vec![
                s(Field::RegistrationId, "dev-1"),
                s(Field::ProvisioningStatus, "disabled"),
                Condition { field: Field::IotEdge, value: Literal::Bool(true) }
            ]
        );
        let c = ok(
            "SELECT * FROM enrollmentGroups WHERE enrollmentGroupId='g1' AND attestation.type = 'x509' AND allocationPolicy='hashed' \
             AND iotHubHostName = 'h.example' AND capabilities.iotEdge = false",
            Collection::EnrollmentGroups,
        );
        assert_eq!(c.len(), 5);
        assert_eq!(c[1], s(Field::AttestationType, "x509"));
        assert_eq!(c[4].value, Literal::Bool(false));
        assert_eq!(ok(r"SELECT * FROM enrollments WHERE deviceId = 'it\'s'", Collection::Enrollments), vec![s(Field::DeviceId, "it's")]);
        assert_eq!(ok("SELECT * FROM enrollments WHERE DEVICEID = 'a b'", Collection::Enrollments), vec![s(Field::DeviceId, "a b")]);
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        let e = Collection::Enrollments;
        refused("SELECT * FROM enrollments WHERE deviceId = 'a' OR deviceId = 'b'", e, "OR is not supported");
        refused("SELECT * FROM enrollments WHERE deviceId LIKE 'a%'", e, "LIKE");
        refused("SELECT * FROM enrollments WHERE deviceId IN ('a')", e, "IN");
        refused("SELECT * FROM enrollments WHERE deviceId < 'a'", e, "'<'");
        refused("SELECT * FROM enrollments WHERE deviceId != 'a'", e, "'!='");
        refused("SELECT * FROM enrollments WHERE STARTSWITH(deviceId, 'a')", e, "functions");
        refused("SELECT * FROM enrollments WHERE NOT deviceId = 'a'", e, "NOT");
        refused("SELECT * FROM enrollments WHERE (deviceId = 'a')", e, "parentheses");
        refused("SELECT * FROM enrollments WHERE colour = 'red'", e, "'colour' cannot be filtered");
        refused("SELECT * FROM enrollments WHERE enrollmentGroupId = 'g'", e, "'enrollmentGroupId' cannot be filtered");
        refused("SELECT * FROM enrollmentGroups WHERE registrationId = 'x'", Collection::EnrollmentGroups, "cannot be filtered");
        refused("SELECT * FROM enrollments WHERE provisioningStatus = true", e, "quoted string");
        refused("SELECT * FROM enrollments WHERE capabilities.iotEdge = 'yes'", e, "true or false");
        refused("SELECT * FROM enrollments WHERE deviceId = 3", e, "'3' is not a supported value");
        refused("SELECT * FROM enrollments WHERE deviceId = null", e, "null");
        refused("SELECT * FROM enrollments WHERE deviceId = 'a", e, "not closed");
        refused("SELECT * FROM enrollments WHERE", e, "ends");
        refused("SELECT * FROM enrollments WHERE deviceId =", e, "ends");
        refused("SELECT * FROM enrollments WHERE deviceId = 'a' AND", e, "ends");
        refused("SELECT * FROM enrollments WHERE deviceId = 'a' deviceId = 'b'", e, "joined by AND");
        refused("SELECT * FROM enrollments ORDER BY deviceId", e, "'ORDER' after FROM enrollments");
        refused("SELECT TOP 5 * FROM enrollments", e, "only SELECT *");
        refused("SELECT deviceId FROM enrollments", e, "only SELECT *");
        refused("SELECT * FROM devices", e, "'devices' is not a collection");
        refused("SELECT * FROM enrollmentGroups", e, "is not a collection");
        refused("SELECT * FROM enrollments", Collection::EnrollmentGroups, "is not a collection");
        refused("SELECT * FROM c", e, "'c' is not a collection");
        refused("SELECT *", e, "expected FROM after SELECT *");
        refused("DELETE FROM enrollments", e, "a query is 'SELECT * FROM enrollments'");
        refused("garbage", e, "a query is");
        refused("**", e, "a query is");
    }
}
