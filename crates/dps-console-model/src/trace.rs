//! A registration's decision trace (`GET /registrations/{id}/trace`) as a list of steps for the console.
//!
//! The answer is `{ registrationState, enrollment: {kind, id}, attestation, trace }`, read as
//! [`dps_proto::trace::RegistrationTrace`]: `trace` is the engine's [`DecisionTrace`] (the matched enrollment, the
//! allocation with its candidates or the webhook's attempts, the twin, the TPM's hub key, the hub connector, the
//! substatus, why, or the error). Steps that are absent produce no step.

use dps_proto::trace::{AllocationStep, CandidateScore, DecisionTrace, EnrollmentRef, RegistrationTrace, WebhookAttempt};
use dps_proto::RegistrationStatus;
use serde_json::Value;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Ok,
    Failed,
    /// Neither: a fact about the registration.
    Info,
}

impl StepOutcome {
    /// A CSS class suffix (`step-ok`, `step-failed`, `step-info`).
    pub fn class(self) -> &'static str {
        match self {
            Self::Ok => "step-ok",
            Self::Failed => "step-failed",
            Self::Info => "step-info",
        }
    }
}

/// One step of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    pub title: String,
    /// Lines of detail (candidates, attempts…).
    pub details: Vec<String>,
    pub outcome: StepOutcome,
}

fn step(title: impl Into<String>, details: Vec<String>, outcome: StepOutcome) -> TraceStep {
    TraceStep { title: title.into(), details, outcome }
}

/// The steps of a trace answer as the service API sends it.
pub fn trace_steps(answer: &Value) -> Vec<TraceStep> {
    steps(&RegistrationTrace::from_value(answer))
}

/// The steps of a trace answer, in the order the service decided.
pub fn steps(answer: &RegistrationTrace) -> Vec<TraceStep> {
    let empty = DecisionTrace::default();
    let t = answer.trace.as_ref().unwrap_or(&empty);
    let mut steps = Vec::new();
    steps.extend(matched_step(answer, t));
    steps.extend(t.allocation.as_ref().map(allocation_step));
    // TPM: the challenge the device answered and the hub key it was given (§4.4.3).
    if let Some(tpm) = &t.tpm {
        let details = tpm.challenge.iter().chain([&tpm.hub_key]).cloned().collect();
        steps.push(step("TPM challenge answered; a hub key issued for the device's TPM", details, StepOutcome::Ok));
    }
    // The twin and the hub's device identity.
    if let Some(twin) = &t.twin {
        steps.push(step(format!("Twin: {}", twin.as_str()), vec![], StepOutcome::Info));
    }
    if let Some(c) = &t.connector {
        let ok = c.created();
        let title = format!("Hub {}: {}", c.hub, if ok { "device identity created or updated" } else { "device identity not created" });
        steps.push(step(title, if ok { vec![] } else { vec![c.result.clone()] }, if ok { StepOutcome::Ok } else { StepOutcome::Failed }));
    }
    if let Some(e) = &t.error {
        steps.push(step(format!("Failed with {}", e.code), vec![e.message.clone()], StepOutcome::Failed));
    }
    steps.push(outcome_step(answer, t));
    steps
}

/// Who the device is and which enrollment it matched.
fn matched_step(answer: &RegistrationTrace, t: &DecisionTrace) -> Option<TraceStep> {
    let attestation = answer.attestation.or(t.attestation).map(|a| a.as_str()).unwrap_or_default();
    let (what, id) = match answer.enrollment.as_ref().or(t.enrollment.as_ref())? {
        EnrollmentRef::Group(id) => ("enrollment group", id),
        EnrollmentRef::Individual(id) => ("individual enrollment", id),
    };
    if id.is_empty() {
        return None;
    }
    let mut details = vec![format!("attestation: {attestation}")];
    details.extend(t.protocol.as_ref().map(|p| format!("protocol: {p}")));
    details.extend(t.operation_id.as_ref().map(|op| format!("operation: {op}")));
    Some(step(format!("Matched {what} '{id}'"), details, StepOutcome::Ok))
}

fn candidate_line(c: &CandidateScore) -> String {
    let mut line = format!("{}: weight {}, score {:.4}", c.hub, c.weight, c.score);
    if let Some(r) = &c.region {
        line.push_str(&format!(", region {r}"));
    }
    if let Some(ms) = c.latency_ms {
        line.push_str(&format!(", {ms} ms ({})", c.latency_source.map(|s| s.as_str()).unwrap_or_default()));
    }
    line
}

/// How the hub was chosen.
fn allocation_step(a: &AllocationStep) -> TraceStep {
    let mut details: Vec<String> = a.candidates().iter().map(candidate_line).collect();
    match a {
        AllocationStep::GeoLatency(g) => {
            if let Some(r) = &g.device_region {
                details.push(format!("device region: {r} ({})", g.region_reason));
            }
        }
        AllocationStep::Custom(w) => {
            details.push(format!("webhook: {}", w.webhook));
            if !w.linked_hubs.is_empty() {
                details.push(format!("offered hubs: {}", w.linked_hubs.join(", ")));
            }
            for (n, at) in w.attempts.iter().enumerate() {
                let what = match at {
                    WebhookAttempt::Answered { status, .. } => format!("HTTP {status}"),
                    WebhookAttempt::Unanswered { error, .. } => error.clone(),
                };
                let retry = if at.retried() { ", retried" } else { "" };
                details.push(format!("attempt {}: {what} in {} ms{retry}", n + 1, at.ms()));
            }
        }
        AllocationStep::Keep { .. } | AllocationStep::Hashed(_) | AllocationStep::Static(_) => {}
    }
    details.extend(a.reason().map(str::to_owned));
    let title = match (a, a.hub()) {
        (AllocationStep::Keep { hub }, _) => format!("Kept its hub {hub} (the reprovision policy never re-assigns)"),
        (_, Some(hub)) => format!("Allocation ({}) chose {hub}", a.policy()),
        (_, None) => format!("Allocation ({}) chose no hub", a.policy()),
    };
    step(title, details, if a.hub().is_some() { StepOutcome::Ok } else { StepOutcome::Failed })
}

/// The outcome.
fn outcome_step(answer: &RegistrationTrace, t: &DecisionTrace) -> TraceStep {
    let state = answer.registration_state.clone().unwrap_or_default();
    let hub = state.assigned_hub.as_deref().unwrap_or_default();
    let device = state.device_id.as_deref().unwrap_or_default();
    let (title, outcome) = match state.status {
        Some(RegistrationStatus::Assigned) => (format!("Assigned to {hub} as device '{device}'"), StepOutcome::Ok),
        Some(RegistrationStatus::Disabled) => ("Disabled: the enrollment is disabled".to_owned(), StepOutcome::Failed),
        Some(RegistrationStatus::Failed) => ("Registration failed".to_owned(), StepOutcome::Failed),
        None => ("No outcome recorded".to_owned(), StepOutcome::Info),
        Some(other) => (format!("Status: {}", other.as_str()), StepOutcome::Info),
    };
    let mut details = Vec::new();
    if let Some(substatus) = t.substatus.or(state.substatus) {
        details.push(format!("substatus: {}", substatus.as_str()));
    }
    details.extend(t.why.clone());
    if t.error.is_none() {
        details.extend(state.error_message);
    }
    step(title, details, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_assignment_reads_as_steps() {
        let answer = json!({
            "registrationState": { "registrationId": "dev-1", "status": "assigned", "substatus": "initialAssignment",
                                   "assignedHub": "hub-b.example.net", "deviceId": "dev-1" },
            "enrollment": { "kind": "group", "id": "floor-3" },
            "attestation": "symmetricKey",
            "trace": {
                "operationId": "4.abc", "attestation": "symmetricKey", "enrollment": { "kind": "group", "id": "floor-3" },
                "allocation": { "policy": "hashed", "hub": "hub-b.example.net", "reason": "highest weighted score",
                    "candidates": [ { "hub": "hub-a.example.net", "weight": 1, "score": 0.5 },
                                    { "hub": "hub-b.example.net", "weight": 2, "score": 1.25, "region": "westeurope", "latencyMs": 12, "latencySource": "table" } ] },
                "twin": "initial twin applied",
                "connector": { "hub": "hub-b.example.net", "result": "identity created or updated" },
                "substatus": "initialAssignment",
                "why": "first assignment of this device"
            }
        });
        let steps = trace_steps(&answer);
        let titles: Vec<&str> = steps.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Matched enrollment group 'floor-3'",
                "Allocation (hashed) chose hub-b.example.net",
                "Twin: initial twin applied",
                "Hub hub-b.example.net: device identity created or updated",
                "Assigned to hub-b.example.net as device 'dev-1'",
            ]
        );
        assert_eq!(steps[1].details[0], "hub-a.example.net: weight 1, score 0.5000");
        assert_eq!(steps[1].details[1], "hub-b.example.net: weight 2, score 1.2500, region westeurope, 12 ms (table)");
        assert_eq!(steps[1].details[2], "highest weighted score");
        assert_eq!(steps[4].details, ["substatus: initialAssignment", "first assignment of this device"]);
        assert!(steps.iter().all(|s| s.outcome != StepOutcome::Failed));
    }

    #[test]
    fn failures_and_webhooks_are_shown() {
        let answer = json!({
            "registrationState": { "registrationId": "dev-2", "status": "failed", "errorCode": 400209, "errorMessage": "webhook" },
            "enrollment": { "kind": "individual", "id": "dev-2" },
            "attestation": "x509",
            "trace": {
                "allocation": { "policy": "custom", "webhook": "https://fn.example.net/api", "linkedHubs": ["a", "b"],
                    "attempts": [ { "status": 500, "ms": 30, "retry": true }, { "error": "connection refused", "ms": 2, "retry": true } ] },
                "error": { "code": 400209, "message": "the custom allocation webhook gave no usable answer in 2 attempts" }
            }
        });
        let steps = trace_steps(&answer);
        assert_eq!(steps[0].title, "Matched individual enrollment 'dev-2'");
        assert_eq!(steps[1].title, "Allocation (custom) chose no hub");
        assert_eq!(steps[1].outcome, StepOutcome::Failed);
        assert!(steps[1].details.contains(&"attempt 1: HTTP 500 in 30 ms, retried".to_owned()));
        assert!(steps[1].details.contains(&"attempt 2: connection refused in 2 ms, retried".to_owned()));
        assert_eq!(steps[2].title, "Failed with 400209");
        assert_eq!(steps[3].title, "Registration failed");
        assert_eq!(steps[3].details, Vec::<String>::new(), "the error message is not repeated");
    }

    #[test]
    fn a_disabled_or_empty_record_still_reads() {
        let disabled = json!({
            "registrationState": { "status": "disabled" }, "enrollment": { "kind": "individual", "id": "d" }, "attestation": "tpm",
            "trace": { "why": "the enrollment is disabled" }
        });
        let steps = trace_steps(&disabled);
        assert_eq!(steps.last().map(|s| s.outcome), Some(StepOutcome::Failed));
        assert_eq!(steps.last().map(|s| s.details.clone()), Some(vec!["the enrollment is disabled".to_owned()]));
        let steps = trace_steps(&json!({}));
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].title, "No outcome recorded");
        assert_eq!(StepOutcome::Ok.class(), "step-ok");
    }
}
