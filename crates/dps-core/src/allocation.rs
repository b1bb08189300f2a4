//! Hub selection (§7.2) behind the [`Allocator`] trait. The candidate set and policy come from the
//! enrollment and the service default; the allocator ranks the candidates and keeps its reasons for the
//! decision trace.
//!
//! `geoLatency` ranks candidates by the latency of [`crate::regions::RegionModel`] and breaks ties with the
//! weighted hash. `custom` is decided by the webhook (`registration/webhook.rs`), not here.
//!
//! `hashed` is a weighted rendezvous hash of the case-folded registration id: each hub scores
//! `-weight / ln(u)` with `u` drawn from SHA-256(hub ‖ id), the highest score wins. Repeat registrations
//! land on the same hub, and adding a hub moves only the devices that now score highest on it.

use dps_proto::{AllocationPolicy, LinkedHub};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DpsError, ErrorKind};
use crate::regions::RegionModel;

/// One candidate's evaluation (a wire type: decision traces show it).
pub use dps_proto::trace::CandidateScore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationDecision {
    pub policy: AllocationPolicy,
    pub hub: String,
    pub candidates: Vec<CandidateScore>,
    pub reason: String,
}

/// What the allocator is asked.
#[derive(Debug, Clone)]
pub struct AllocationRequest<'a> {
    pub registration_id: &'a str,
    pub policy: AllocationPolicy,
    pub candidates: Vec<LinkedHub>,
    /// Whether the enrollment itself named the candidates (`static` requires it).
    pub named_by_enrollment: bool,
    /// The device's region (from its source address) and the latency model, for `geoLatency`.
    pub device_region: Option<String>,
    pub regions: &'a RegionModel,
}

pub trait Allocator: Send + Sync {
    fn allocate(&self, req: &AllocationRequest<'_>) -> Result<AllocationDecision, DpsError>;
}

/// The built-in policies: `hashed` and `static`; `geoLatency` falls back to `hashed` until regions land.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinAllocator;

/// `u` in (0, 1) for a hub and a registration id.
fn unit_hash(hub: &str, registration_id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(hub.to_ascii_lowercase().as_bytes());
    h.update([0u8]);
    h.update(registration_id.to_ascii_lowercase().as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) as f64 + 0.5) / 18_446_744_073_709_551_616.0
}

/// Weighted rendezvous scores, highest first.
pub fn rendezvous(registration_id: &str, hubs: &[LinkedHub]) -> Vec<CandidateScore> {
    let mut v: Vec<CandidateScore> = hubs
        .iter()
        .map(|h| {
            let w = h.allocation_weight.clamp(1, 1000);
            CandidateScore {
                hub: h.host_name.clone(),
                weight: w,
                score: -(w as f64) / unit_hash(&h.host_name, registration_id).ln(),
                region: h.region.clone(),
                latency_ms: None,
                latency_source: None,
            }
        })
        .collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.hub.cmp(&b.hub)));
    v
}

impl Allocator for BuiltinAllocator {
    fn allocate(&self, req: &AllocationRequest<'_>) -> Result<AllocationDecision, DpsError> {
        if req.candidates.is_empty() {
            return Err(DpsError::new(
                ErrorKind::InvalidArgument,
                "no IoT hub can be assigned: link a hub (dps hub add HOSTNAME) or name one in the enrollment",
            ));
        }
        match req.policy {
            AllocationPolicy::Static => {
                if !req.named_by_enrollment || req.candidates.len() != 1 {
                    return Err(DpsError::invalid(
                        "the static allocation policy needs the enrollment to name exactly one linked hub (iotHubs)",
                    ));
                }
                let hub = req.candidates[0].host_name.clone();
                Ok(AllocationDecision {
                    policy: req.policy,
                    hub: hub.clone(),
                    candidates: vec![CandidateScore {
                        hub,
                        weight: req.candidates[0].allocation_weight,
                        score: 1.0,
                        region: req.candidates[0].region.clone(),
                        latency_ms: None,
                        latency_source: None,
                    }],
                    reason: "static: the enrollment names this hub".into(),
                })
            }
            AllocationPolicy::Hashed => {
                let scores = rendezvous(req.registration_id, &req.candidates);
                let hub = scores.first().map(|s| s.hub.clone()).unwrap_or_default();
                let reason = format!("hashed: highest weighted rendezvous score among {} hub(s)", scores.len());
                Ok(AllocationDecision { policy: req.policy, hub, candidates: scores, reason })
            }
            AllocationPolicy::GeoLatency => {
                let mut scores = rendezvous(req.registration_id, &req.candidates);
                for s in &mut scores {
                    if let Some(h) = req.candidates.iter().find(|h| h.host_name == s.hub) {
                        let (ms, source) = req.regions.latency(req.device_region.as_deref(), h);
                        s.latency_ms = Some(ms);
                        s.latency_source = Some(source);
                    }
                }
                // Lowest latency first; among equals the weighted hash order (already sorted) stays.
                scores.sort_by_key(|s| s.latency_ms.unwrap_or(u32::MAX));
                let best = scores.first().cloned();
                let hub = best.as_ref().map(|s| s.hub.clone()).unwrap_or_default();
                let ties = scores.iter().filter(|s| s.latency_ms == best.as_ref().and_then(|b| b.latency_ms)).count();
                let reason = format!(
                    "geoLatency: device region {}, lowest latency {} ms{}",
                    req.device_region.as_deref().unwrap_or("(none)"),
                    best.and_then(|b| b.latency_ms).unwrap_or_default(),
                    if ties > 1 { format!(", {ties} hubs tied, the weighted hash chose") } else { String::new() }
                );
                Ok(AllocationDecision { policy: req.policy, hub, candidates: scores, reason })
            }
            AllocationPolicy::Custom => {
                Err(DpsError::new(ErrorKind::CustomAllocationFailed, "the custom policy is decided by its webhook"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(name: &str, w: u32) -> LinkedHub {
        LinkedHub { host_name: name.into(), allocation_weight: w, ..Default::default() }
    }

    fn pick(id: &str, hubs: &[LinkedHub]) -> String {
        BuiltinAllocator
            .allocate(&AllocationRequest {
                registration_id: id,
                policy: AllocationPolicy::Hashed,
                candidates: hubs.to_vec(),
                named_by_enrollment: false,
                device_region: None,
                regions: &RegionModel::default(),
            })
            .map(|d| d.hub)
            .unwrap_or_default()
    }

    #[test]
    fn hashed_is_stable_and_case_insensitive() {
        let hubs = [hub("a", 1), hub("b", 1), hub("c", 1)];
        assert_eq!(pick("Dev-1", &hubs), pick("dev-1", &hubs));
        assert_eq!(pick("dev-1", &hubs), pick("dev-1", &hubs));
    }

    #[test]
    fn hashed_follows_the_weights() {
        let hubs = [hub("a", 1), hub("b", 2), hub("c", 3)];
        let mut n = std::collections::HashMap::new();
        for i in 0..6000 {
            *n.entry(pick(&format!("device-{i}"), &hubs)).or_insert(0) += 1;
        }
        for (h, w) in [("a", 1.0), ("b", 2.0), ("c", 3.0)] {
            let share = *n.get(h).unwrap_or(&0) as f64 / 6000.0;
            assert!((share - w / 6.0).abs() < 0.03, "{h}: {share}");
        }
    }

    #[test]
    fn adding_a_hub_moves_devices_only_to_it() {
        let three = [hub("a", 1), hub("b", 1), hub("c", 1)];
        let four = [hub("a", 1), hub("b", 1), hub("c", 1), hub("d", 1)];
        for i in 0..1000 {
            let id = format!("device-{i}");
            let (before, after) = (pick(&id, &three), pick(&id, &four));
            assert!(after == before || after == "d", "{id} moved from {before} to {after}");
        }
    }

    #[test]
    fn static_needs_exactly_one_named_hub() {
        let none = RegionModel::default();
        let req = |c: Vec<LinkedHub>, named| AllocationRequest {
            registration_id: "x",
            policy: AllocationPolicy::Static,
            candidates: c,
            named_by_enrollment: named,
            device_region: None,
            regions: &none,
        };
        assert_eq!(BuiltinAllocator.allocate(&req(vec![hub("a", 1)], true)).map(|d| d.hub), Ok("a".to_owned()));
        assert!(BuiltinAllocator.allocate(&req(vec![hub("a", 1), hub("b", 1)], true)).is_err());
        assert!(BuiltinAllocator.allocate(&req(vec![hub("a", 1)], false)).is_err());
        assert!(BuiltinAllocator.allocate(&req(vec![], false)).is_err());
    }

    #[test]
    fn geo_latency_prefers_the_nearest_region_and_hashes_ties() {
        use crate::regions::RegionLatency;
        let regions = RegionModel {
            service_region: Some("eu".into()),
            latency: vec![RegionLatency { from: "eu".into(), to: "us".into(), ms: 90 }],
            default_latency_ms: 200,
            ..Default::default()
        };
        let in_region = |n: &str, r: &str| LinkedHub { host_name: n.into(), region: Some(r.into()), ..Default::default() };
        let hubs = vec![in_region("eu-1", "eu"), in_region("eu-2", "eu"), in_region("us-1", "us")];
        let decide = |id: &str, region: &str| {
            BuiltinAllocator
                .allocate(&AllocationRequest {
                    registration_id: id,
                    policy: AllocationPolicy::GeoLatency,
                    candidates: hubs.clone(),
                    named_by_enrollment: false,
                    device_region: Some(region.into()),
                    regions: &regions,
                })
                .expect("allocate")
        };
        for i in 0..50 {
            assert_eq!(decide(&format!("d{i}"), "us").hub, "us-1");
        }
        let eu: std::collections::HashSet<String> = (0..50).map(|i| decide(&format!("d{i}"), "eu").hub).collect();
        assert_eq!(eu, ["eu-1".to_owned(), "eu-2".to_owned()].into_iter().collect(), "ties are spread by the hash");
        let d = decide("x", "eu");
        assert_eq!(d.candidates.last().and_then(|c| c.latency_ms), Some(90));
        assert!(d.reason.contains("tied"), "{}", d.reason);
    }
}
