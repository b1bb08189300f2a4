//! A registration's decision trace (`GET /registrations/{id}/trace`) as a list of steps for the console.
//!
//! The answer is `{ registrationState, enrollment: {kind, id}, attestation, trace }`, where `trace` is the
//! service's free-form record (`dps-core` `registration.rs`): `enrollment`, `why`, `allocation` (policy,
//! candidates with weight and score, reason; or the custom webhook's attempts; or `keep`), `twin`,
//! `connector`, `substatus` and `error`. Members that are absent produce no step.

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

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn step(title: impl Into<String>, details: Vec<String>, outcome: StepOutcome) -> TraceStep {
    TraceStep { title: title.into(), details, outcome }
}

/// The steps of a trace answer, in the order the service decided.
pub fn trace_steps(answer: &Value) -> Vec<TraceStep> {
    let mut steps = Vec::new();
    let state = answer.get("registrationState");
    let t = answer.get("trace").filter(|t| t.is_object());
    let at = |p: &str| t.and_then(|t| t.pointer(p));

    // 1. Who the device is and which enrollment it matched.
    let attestation = text(answer.get("attestation").or_else(|| at("/attestation")));
    let enrollment = answer.get("enrollment").or_else(|| at("/enrollment"));
    let kind = text(enrollment.and_then(|e| e.get("kind")));
    let id = text(enrollment.and_then(|e| e.get("id")));
    if !id.is_empty() {
        let what = if kind == "group" { "enrollment group" } else { "individual enrollment" };
        let mut details = vec![format!("attestation: {attestation}")];
        if let Some(protocol) = at("/protocol").and_then(Value::as_str) {
            details.push(format!("protocol: {protocol}"));
        }
        if let Some(op) = at("/operationId").and_then(Value::as_str) {
            details.push(format!("operation: {op}"));
        }
        steps.push(step(format!("Matched {what} '{id}'"), details, StepOutcome::Ok));
    }

    // 2. How the hub was chosen.
    if let Some(a) = at("/allocation") {
        let policy = text(a.get("policy"));
        let hub = text(a.get("hub"));
        let mut details = Vec::new();
        for c in a.get("candidates").and_then(Value::as_array).into_iter().flatten() {
            let mut line = format!(
                "{}: weight {}, score {:.4}",
                text(c.get("hub")),
                c.get("weight").and_then(Value::as_u64).unwrap_or_default(),
                c.get("score").and_then(Value::as_f64).unwrap_or_default()
            );
            if let Some(r) = c.get("region").and_then(Value::as_str) {
                line.push_str(&format!(", region {r}"));
            }
            if let Some(ms) = c.get("latencyMs").and_then(Value::as_u64) {
                line.push_str(&format!(", {ms} ms ({})", text(c.get("latencySource"))));
            }
            details.push(line);
        }
        if let Some(r) = a.get("deviceRegion").filter(|v| !v.is_null()) {
            details.push(format!("device region: {} ({})", text(Some(r)), text(a.get("regionReason"))));
        }
        if let Some(w) = a.get("webhook").and_then(Value::as_str) {
            details.push(format!("webhook: {w}"));
            let hubs: Vec<String> = a.get("linkedHubs").and_then(Value::as_array).into_iter().flatten().map(|h| text(Some(h))).collect();
            if !hubs.is_empty() {
                details.push(format!("offered hubs: {}", hubs.join(", ")));
            }
            for (n, at) in a.get("attempts").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let what = match at.get("status") {
                    Some(s) => format!("HTTP {}", text(Some(s))),
                    None => text(at.get("error")),
                };
                let retry = if at.get("retry").and_then(Value::as_bool) == Some(true) { ", retried" } else { "" };
                details.push(format!("attempt {}: {what} in {} ms{retry}", n + 1, text(at.get("ms"))));
            }
        }
        if let Some(r) = a.get("reason").and_then(Value::as_str) {
            details.push(r.to_owned());
        }
        let title = match (policy.as_str(), hub.is_empty()) {
            ("keep", _) => format!("Kept its hub {hub} (the reprovision policy never re-assigns)"),
            (p, false) => format!("Allocation ({p}) chose {hub}"),
            (p, true) => format!("Allocation ({p}) chose no hub"),
        };
        steps.push(step(title, details, if hub.is_empty() { StepOutcome::Failed } else { StepOutcome::Ok }));
    }

    // TPM: the challenge the device answered and the hub key it was given (§4.4.3).
    if let Some(t) = at("/tpm") {
        let details = [t.get("challenge"), t.get("hubKey")].into_iter().flatten().map(|v| text(Some(v))).collect();
        steps.push(step("TPM challenge answered; a hub key issued for the device's TPM", details, StepOutcome::Ok));
    }

    // 3. The twin and the hub's device identity.
    if let Some(twin) = at("/twin").and_then(Value::as_str) {
        steps.push(step(format!("Twin: {twin}"), vec![], StepOutcome::Info));
    }
    if let Some(c) = at("/connector") {
        let result = text(c.get("result"));
        let ok = result == "identity created or updated";
        let title = format!(
            "Hub {}: {}",
            text(c.get("hub")),
            if ok { "device identity created or updated" } else { "device identity not created" }
        );
        steps.push(step(title, if ok { vec![] } else { vec![result] }, if ok { StepOutcome::Ok } else { StepOutcome::Failed }));
    }

    // 4. The outcome.
    if let Some(e) = at("/error") {
        let code = text(e.get("code"));
        steps.push(step(format!("Failed with {code}"), vec![text(e.get("message"))], StepOutcome::Failed));
    }
    let status = text(state.and_then(|s| s.get("status")));
    let why = at("/why").and_then(Value::as_str).map(str::to_owned);
    let substatus = text(at("/substatus").or_else(|| state.and_then(|s| s.get("substatus"))));
    let hub = text(state.and_then(|s| s.get("assignedHub")));
    let device = text(state.and_then(|s| s.get("deviceId")));
    let (title, outcome) = match status.as_str() {
        "assigned" => (format!("Assigned to {hub} as device '{device}'"), StepOutcome::Ok),
        "disabled" => ("Disabled: the enrollment is disabled".to_owned(), StepOutcome::Failed),
        "failed" => ("Registration failed".to_owned(), StepOutcome::Failed),
        "" => ("No outcome recorded".to_owned(), StepOutcome::Info),
        other => (format!("Status: {other}"), StepOutcome::Info),
    };
    let mut details = Vec::new();
    if !substatus.is_empty() {
        details.push(format!("substatus: {substatus}"));
    }
    if let Some(w) = why {
        details.push(w);
    }
    if let Some(m) = state.and_then(|s| s.get("errorMessage")).and_then(Value::as_str) {
        if at("/error").is_none() {
            details.push(m.to_owned());
        }
    }
    steps.push(step(title, details, outcome));
    steps
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
