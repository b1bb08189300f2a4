//! The one mapping of an answer, or a `DpsError`, to AMQP (§3.4, §0.8):
//! - an answer → the request is `accepted`, and a response message goes to the device: one `data` section
//!   with the JSON `RegistrationOperationStatus`, the request's correlation-id echoed with its AMQP type, and
//!   `retry-after` + `Retry-After` (int) while the registration is in progress; `failed`/`disabled` are
//!   answers like `assigned`, not rejections;
//! - an error → the request is `rejected` with `error = { condition, description = the JSON error body
//!   (§1.8), info = { retry-after, Retry-After } }`; the condition follows the HTTP status (conditions are
//!   the reference's recommendation: Node maps them to its error classes, .NET reads the description).

use dps_core::registration::Reply;
use dps_core::DpsError;
use dps_proto::amqp::RETRY_AFTER_NAMES;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, ErrorCondition, Fields};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Data, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Value};
use tracing::info;

use crate::app::App;
use crate::https::error::{details, status_of};

/// The response message for an answer.
pub fn message(reply: &Reply, correlation_id: Option<MessageId>) -> Message<Data> {
    let body = serde_json::to_vec(&reply.status).unwrap_or_default();
    let properties = Properties { correlation_id, ..Default::default() };
    let mut application = OrderedMap::new();
    if let Some(n) = reply.retry_after.filter(|_| reply.in_progress()) {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        for name in RETRY_AFTER_NAMES {
            application.insert(name.to_owned(), SimpleValue::Int(n));
        }
    }
    Message::builder()
        .properties(properties)
        .application_properties((!application.is_empty()).then_some(ApplicationProperties(application)))
        .data(Binary::from(body))
        .build()
}

/// The AMQP condition for each HTTP status.
fn condition(status: u16) -> ErrorCondition {
    let custom = |s: &str| ErrorCondition::Custom(Symbol::from(s));
    match status {
        400 | 405 | 415 => custom("com.microsoft:argument-error"),
        401 | 403 => ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        404 => ErrorCondition::AmqpError(AmqpError::NotFound),
        409 | 412 => custom("com.microsoft:precondition-failed"),
        413 => ErrorCondition::LinkError(fe2o3_amqp::types::definitions::LinkError::MessageSizeExceeded),
        429 => custom("com.microsoft:device-container-throttled"),
        _ => ErrorCondition::AmqpError(AmqpError::InternalError),
    }
}

/// The error of a rejected request (logged here with its tracking id, like the other transports).
pub fn rejection(app: &App, e: &DpsError, registration_id: &str) -> AmqpErrorBody {
    let tracking_id = uuid::Uuid::new_v4().to_string();
    info!(code = e.code(), tracking_id, registration_id, error = %e.message, "AMQP request refused");
    let status = status_of(e.kind).as_u16();
    let description = serde_json::to_string(&details(e, &tracking_id, app.clock.now())).unwrap_or_default();
    let info = e.retry_after.map(|n| {
        let mut f = Fields::new();
        for name in RETRY_AFTER_NAMES {
            f.insert(Symbol::from(name), Value::Int(i32::try_from(n).unwrap_or(i32::MAX)));
        }
        Box::new(f)
    });
    AmqpErrorBody { condition: condition(status), description: Some(description), info }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_condition_node_understands() {
        assert_eq!(condition(401), ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess));
        assert_eq!(condition(404), ErrorCondition::AmqpError(AmqpError::NotFound));
        assert_eq!(condition(503), ErrorCondition::AmqpError(AmqpError::InternalError));
        assert_eq!(condition(429), ErrorCondition::Custom(Symbol::from("com.microsoft:device-container-throttled")));
    }
}
