//! Whether a step's devices ended as the scenario expects: every problem in words (empty: as expected).

use std::collections::BTreeMap;

use crate::devices::Outcome;
use crate::scenario::Expect;

pub fn problems(expect: &Expect, outcomes: &[Outcome]) -> Vec<String> {
    let mut out: Vec<String> = outcomes.iter().filter_map(|o| device_problem(expect, o)).collect();
    if let (Some(hubs), Some(least)) = (&expect.hubs, expect.every_hub_at_least) {
        let counts = per_hub(outcomes);
        for h in hubs {
            let n = counts.get(&h.to_ascii_lowercase()).copied().unwrap_or(0);
            if n < least {
                out.push(format!("hub {h} received {n} devices, fewer than {least}"));
            }
        }
    }
    out
}

/// Devices per assigned hub (lower-case names).
pub fn per_hub(outcomes: &[Outcome]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for hub in outcomes.iter().filter_map(|o| o.assigned_hub.as_deref()) {
        *counts.entry(hub.to_ascii_lowercase()).or_insert(0) += 1;
    }
    counts
}

fn device_problem(expect: &Expect, o: &Outcome) -> Option<String> {
    let id = &o.registration_id;
    let hub = o.assigned_hub.as_deref().unwrap_or("no hub");
    if let Some(want) = expect.status {
        if o.status != Some(want) {
            let got = o.status.map_or_else(|| format!("refused: {}", o.message.as_deref().unwrap_or("?")), |s| format!("{s:?}"));
            return Some(format!("{id}: expected {want:?}, got {got}"));
        }
    }
    if let Some(code) = expect.error_code {
        if o.error_code != Some(code) {
            return Some(format!("{id}: expected error {code}, got {:?} ({})", o.error_code, o.message.as_deref().unwrap_or("no error")));
        }
    }
    if let Some(want) = &expect.hub {
        if !want.eq_ignore_ascii_case(hub) {
            return Some(format!("{id}: expected hub {want}, got {hub}"));
        }
    }
    if let Some(hubs) = &expect.hubs {
        if !hubs.iter().any(|h| h.eq_ignore_ascii_case(hub)) {
            return Some(format!("{id}: {hub} is not one of {}", hubs.join(", ")));
        }
    }
    match expect.substatus {
        Some(want) if o.substatus != Some(want) => Some(format!("{id}: expected substatus {want:?}, got {:?}", o.substatus)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use dps_proto::{RegistrationStatus, Substatus};

    use super::*;

    fn assigned(id: &str, hub: &str) -> Outcome {
        Outcome {
            registration_id: id.into(),
            transport: "https".into(),
            status: Some(RegistrationStatus::Assigned),
            assigned_hub: Some(hub.into()),
            device_id: Some(id.into()),
            substatus: Some(Substatus::InitialAssignment),
            error_code: None,
            message: None,
            millis: 1,
            issued_chain: None,
        }
    }

    #[test]
    fn each_expectation_is_checked_per_device_and_the_spread_per_hub() {
        let all = [assigned("d1", "A"), assigned("d2", "b"), assigned("d3", "a")];
        let hubs = Expect { hubs: Some(vec!["a".into(), "B".into()]), every_hub_at_least: Some(1), ..Default::default() };
        assert_eq!(problems(&hubs, &all), Vec::<String>::new());
        let spread = Expect { every_hub_at_least: Some(2), ..hubs.clone() };
        assert_eq!(problems(&spread, &all), ["hub B received 1 devices, fewer than 2"]);
        let one_hub = Expect { hub: Some("a".into()), ..Default::default() };
        assert_eq!(problems(&one_hub, &all), ["d2: expected hub a, got b"]);
        let status = Expect { status: Some(RegistrationStatus::Disabled), ..Default::default() };
        assert_eq!(problems(&status, &all).len(), 3);
        let code = Expect { error_code: Some(401002), ..Default::default() };
        assert!(problems(&code, &all).iter().all(|p| p.contains("expected error 401002")));
        let sub = Expect { substatus: Some(Substatus::DeviceDataMigrated), ..Default::default() };
        assert_eq!(problems(&sub, &all[..1]), ["d1: expected substatus DeviceDataMigrated, got Some(InitialAssignment)"]);
    }

    #[test]
    fn a_refusal_is_not_a_status() {
        let refused =
            Outcome { status: None, assigned_hub: None, error_code: Some(401002), message: Some("bad key".into()), ..assigned("d", "a") };
        let p = problems(&Expect { status: Some(RegistrationStatus::Assigned), ..Default::default() }, std::slice::from_ref(&refused));
        assert_eq!(p, ["d: expected Assigned, got refused: bad key"]);
        assert!(problems(&Expect { error_code: Some(401002), ..Default::default() }, &[refused]).is_empty());
    }
}
