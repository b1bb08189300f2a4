//! The custom allocation policy (§6): the request (the device's runtime context, the enrollment in the
//! webhook's api-version schema, the hubs it may choose from), its retries (≥ 429, time-outs and connection
//! errors, on [`WebhookRetry`](super::WebhookRetry)'s schedule, while the device keeps seeing `assigning`), and
//! its answer mapped to §6.3's codes.

use dps_proto::trace::{AllocationStep, DecisionTrace, WebhookAttempt, WebhookStep};
use dps_proto::{AttestationType, InitialTwin, LinkedHub};
use serde_json::{json, Value};

use super::decide::{EnrollmentView, Placing};
use super::RegistrationEngine;
use crate::attestation::Matched;
use crate::error::{DpsError, ErrorKind};
use crate::model::{Operation, RegistrationRecord};

/// The hub chosen for a device, with what a webhook may have returned for it (§6.2).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HubChoice {
    pub hub: String,
    pub initial_twin: Option<InitialTwin>,
    pub payload: Option<Value>,
}

impl HubChoice {
    pub(super) fn hub(hub: &str) -> Self {
        Self { hub: hub.to_owned(), ..Self::default() }
    }
}

/// What the webhook's calls gave: its body after a 2xx, the error a final answer means, or nothing usable.
type Answer = Option<Result<Vec<u8>, DpsError>>;

impl RegistrationEngine {
    /// Asks the enrollment's webhook which of `linked_hubs` the device goes to.
    pub(super) async fn call_webhook(
        &self,
        placing: &Placing<'_>,
        linked_hubs: &[String],
        trace: &mut DecisionTrace,
    ) -> Result<HubChoice, DpsError> {
        let Placing { op, matched, view, previous } = *placing;
        let Some(def) = view.custom.as_ref() else {
            return Err(DpsError::new(
                ErrorKind::CustomAllocationFailed,
                "the custom allocation policy needs customAllocationDefinition (webhookUrl, apiVersion)",
            ));
        };
        let body = webhook_request(op, matched, previous, linked_hubs, &def.api_version)?;
        let (attempts, answer) = self.post_with_retries(&def.webhook_url, &body).await;
        let mut step = WebhookStep {
            webhook: redact_url(&def.webhook_url).to_owned(),
            linked_hubs: linked_hubs.to_vec(),
            attempts,
            ..WebhookStep::default()
        };
        let choice = read_answer(answer, linked_hubs, self.config.webhook_retry.retries + 1);
        if let Ok(c) = &choice {
            step.hub = Some(c.hub.clone());
            step.returned_initial_twin = Some(c.initial_twin.is_some());
            step.returned_payload = Some(c.payload.is_some());
        }
        trace.allocation = Some(AllocationStep::Custom(step));
        choice
    }

    /// POSTs the request until an answer is final (2xx, 401, another status below 429) or the retries are spent.
    async fn post_with_retries(&self, url: &str, body: &Value) -> (Vec<WebhookAttempt>, Answer) {
        let retry = self.config.webhook_retry;
        let mut attempts = Vec::new();
        for attempt in 0..=retry.retries {
            if attempt > 0 {
                tokio::time::sleep(retry.delay(attempt)).await;
            }
            let started = std::time::Instant::now();
            let outcome = self.ports.webhook.call(url, body).await;
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (status, bytes) = match outcome {
                Ok(answer) => answer,
                Err(e @ crate::ports::WebhookError::TooLarge(_)) => {
                    let error = DpsError::new(ErrorKind::CustomAllocationFailed, format!("the custom allocation {e}"));
                    attempts.push(WebhookAttempt::Unanswered { error: e.to_string(), ms, retry: false });
                    return (attempts, Some(Err(error)));
                }
                Err(e) => {
                    let error = dps_proto::truncate_for_display(&e.to_string()).into_owned();
                    attempts.push(WebhookAttempt::Unanswered { error, ms, retry: true });
                    continue;
                }
            };
            attempts.push(WebhookAttempt::Answered { status, ms, retry: status >= 429 });
            match status {
                200..=299 => return (attempts, Some(Ok(bytes))),
                401 => {
                    let e = DpsError::new(
                        ErrorKind::CustomAllocationUnauthorizedAccess,
                        "the custom allocation webhook answered 401 Unauthorized",
                    );
                    return (attempts, Some(Err(e)));
                }
                429.. => {}
                300..=399 => {
                    let e = DpsError::new(
                        ErrorKind::CustomAllocationFailed,
                        format!("the custom allocation webhook answered HTTP {status}, a redirect, which is not followed: configure the URL it redirects to"),
                    );
                    return (attempts, Some(Err(e)));
                }
                _ => {
                    let e =
                        DpsError::new(ErrorKind::CustomAllocationFailed, format!("the custom allocation webhook answered HTTP {status}"));
                    return (attempts, Some(Err(e)));
                }
            }
        }
        (attempts, None)
    }
}

/// The request body (§6.1): the device's runtime context, the hubs it may go to, and its enrollment.
fn webhook_request(
    op: &Operation,
    matched: &Matched,
    previous: Option<&RegistrationRecord>,
    linked_hubs: &[String],
    api_version: &str,
) -> Result<Value, DpsError> {
    let mut context = json!({ "registrationId": op.registration_id });
    if let Some(p) = previous {
        context["currentIotHubHostName"] = json!(p.state.assigned_hub);
        context["currentDeviceId"] = json!(p.state.device_id);
    }
    match op.attestation {
        AttestationType::X509 => context["x509"] = serde_json::to_value(&op.x509).unwrap_or_default(),
        _ => context["symmetricKey"] = json!({}),
    }
    if let Some(p) = &op.payload {
        context["payload"] = p.clone();
    }
    let mut body = json!({ "deviceRuntimeContext": context, "linkedHubs": linked_hubs });
    if let Err(why) = crate::api_version::check_webhook_version(api_version) {
        return Err(DpsError::new(ErrorKind::CustomAllocationFailed, why));
    }
    match matched {
        Matched::Individual(e) => body["individualEnrollment"] = enrollment_for_webhook(e.as_ref(), api_version),
        Matched::Group(g) => body["enrollmentGroup"] = enrollment_for_webhook(g.as_ref(), api_version),
    }
    Ok(body)
}

/// The hub the webhook chose (one of `linked_hubs`), and the twin and payload it returned. `attempts`: how many
/// calls were made (for the error when none answered usefully).
fn read_answer(answer: Answer, linked_hubs: &[String], attempts: u32) -> Result<HubChoice, DpsError> {
    let bytes = match answer {
        Some(r) => r?,
        None => {
            return Err(DpsError::new(
                ErrorKind::CustomAllocationFailed,
                format!("the custom allocation webhook gave no usable answer in {attempts} attempts"),
            ))
        }
    };
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
        DpsError::new(ErrorKind::CustomAllocationFailed, format!("the custom allocation webhook's answer is not JSON: {e}"))
    })?;
    let hub = member(&answer, "iotHubHostName").and_then(|h| h.as_str()).map(str::trim).unwrap_or_default().to_owned();
    if hub.is_empty() {
        return Err(DpsError::new(
            ErrorKind::CustomAllocationIotHubNotSpecified,
            "the custom allocation webhook named no IoT hub (iotHubHostName)",
        ));
    }
    let Some(hub) = linked_hubs.iter().find(|h| h.eq_ignore_ascii_case(&hub)).cloned() else {
        return Err(DpsError::new(
            ErrorKind::CustomAllocationFailed,
            format!("the custom allocation webhook chose '{}', which is not among linkedHubs", dps_proto::truncate_for_display(&hub)),
        ));
    };
    let initial_twin = member(&answer, "initialTwin").filter(|t| !t.is_null()).and_then(|t| serde_json::from_value(t.clone()).ok());
    let payload = member(&answer, "payload").filter(|p| !p.is_null()).cloned();
    Ok(HubChoice { hub, initial_twin, payload })
}

/// `linkedHubs` of a webhook request (§6.1): the enrollment's hubs, else every linked hub; only the current
/// hub when the device is assigned and never re-provisioned.
pub(super) fn webhook_hubs(view: &EnrollmentView, linked: &[LinkedHub], keep: Option<&str>) -> Vec<String> {
    if let Some(current) = keep {
        return vec![current.to_owned()];
    }
    match &view.iot_hubs {
        Some(h) if !h.is_empty() => h.clone(),
        _ => match &view.legacy_hub {
            Some(h) if !h.is_empty() => vec![h.clone()],
            _ => linked.iter().map(|h| h.host_name.clone()).collect(),
        },
    }
}

/// A member of a JSON object, name matched case-insensitively (§6.2: docs and examples disagree on case).
fn member<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// An enrollment as the webhook sees it: the members of its api-version's schema, no secrets, attestation
/// reduced to its type (Azure's example).
fn enrollment_for_webhook<T: serde::Serialize>(e: &T, api_version: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    let members = crate::api_version::webhook_members(api_version);
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| members.contains(&k.as_str()));
    }
    if let Some(kind) = v.pointer("/attestation/type").cloned() {
        v["attestation"] = json!({ "type": kind });
    }
    v
}

/// The URL without its query (function keys live there) for traces and logs.
fn redact_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hubs() -> Vec<String> {
        vec!["a.example.net".into(), "b.example.net".into()]
    }

    fn code(r: Result<HubChoice, DpsError>) -> i64 {
        r.err().map_or(0, |e| e.code())
    }

    #[test]
    fn an_answer_names_a_linked_hub_in_any_case() {
        let body = br#"{ "IotHubHostName": " B.example.net ", "initialTwin": { "tags": { "a": 1 } }, "payload": { "x": 2 } }"#;
        let c = read_answer(Some(Ok(body.to_vec())), &hubs(), 1);
        let c = c.unwrap_or_default();
        assert_eq!(c.hub, "b.example.net");
        assert!(c.initial_twin.is_some());
        assert_eq!(c.payload, Some(json!({ "x": 2 })));
        let plain = read_answer(Some(Ok(br#"{"iotHubHostName":"a.example.net","payload":null}"#.to_vec())), &hubs(), 1);
        assert_eq!(plain.map(|c| (c.hub, c.initial_twin, c.payload)).ok(), Some(("a.example.net".to_owned(), None, None)));
    }

    #[test]
    fn unusable_answers_have_their_codes() {
        assert_eq!(code(read_answer(None, &hubs(), 11)), ErrorKind::CustomAllocationFailed.code());
        assert_eq!(code(read_answer(Some(Ok(b"not json".to_vec())), &hubs(), 1)), ErrorKind::CustomAllocationFailed.code());
        assert_eq!(code(read_answer(Some(Ok(b"{}".to_vec())), &hubs(), 1)), ErrorKind::CustomAllocationIotHubNotSpecified.code());
        let elsewhere = br#"{"iotHubHostName":"c.example.net"}"#.to_vec();
        assert_eq!(code(read_answer(Some(Ok(elsewhere)), &hubs(), 1)), ErrorKind::CustomAllocationFailed.code());
        let refused = DpsError::new(ErrorKind::CustomAllocationUnauthorizedAccess, "401");
        assert_eq!(code(read_answer(Some(Err(refused)), &hubs(), 1)), ErrorKind::CustomAllocationUnauthorizedAccess.code());
    }

    #[test]
    fn a_webhook_naming_a_huge_hub_gets_a_bounded_error() {
        let body = serde_json::to_vec(&json!({ "iotHubHostName": "h".repeat(100_000) })).expect("serialises");
        let e = read_answer(Some(Ok(body)), &hubs(), 1).err().unwrap_or_else(|| panic!("an unknown hub is refused"));
        assert_eq!(e.code(), ErrorKind::CustomAllocationFailed.code());
        assert!(e.message.len() < 1000 && e.message.contains("more bytes]"), "{} bytes", e.message.len());
    }

    #[test]
    fn function_keys_stay_out_of_traces() {
        assert_eq!(redact_url("https://fn.example.net/api/allocate?code=secret"), "https://fn.example.net/api/allocate");
        assert_eq!(member(&json!({ "IOTHUBHOSTNAME": 1 }), "iotHubHostName"), Some(&json!(1)));
    }
}
