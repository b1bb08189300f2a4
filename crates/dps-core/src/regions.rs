//! The lowest-latency model (§7.2 `geoLatency`). Azure routes by measured internet latency; a local service
//! needs a model an engineer can state:
//!
//! - a device's **region** comes from its source address, through a network → region map (longest prefix
//!   wins: the factory floor `10.1.0.0/16`, the lab `192.168.7.0/24`…); devices from unmapped addresses are in
//!   the service's own region;
//! - a hub's region is its `region` (unset: the service's region);
//! - the **latency** between two regions comes from a table (`from`, `to`, milliseconds; symmetric unless both
//!   directions are given); same region: 0 ms; a pair the table does not name: `default_latency_ms`;
//! - optionally the service measures the round-trip time to each hub's endpoint (TCP connect to its host on
//!   port 443); a measured time replaces the table for devices in the service's own region;
//! - the lowest latency wins; ties are broken by the weighted hash, so weights still spread load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use dps_proto::LinkedHub;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRegion {
    pub network: IpNet,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLatency {
    pub from: String,
    pub to: String,
    pub ms: u32,
}

/// Where a latency figure came from (a wire type: decision traces show it).
pub use dps_proto::trace::LatencySource;

#[derive(Debug, Clone, Default)]
pub struct RegionModel {
    pub service_region: Option<String>,
    pub networks: Vec<NetworkRegion>,
    pub latency: Vec<RegionLatency>,
    pub default_latency_ms: u32,
    /// Round-trip times measured to hubs (host name, lower case → ms), when measuring is on.
    pub measured: Arc<RwLock<HashMap<String, u32>>>,
}

impl RegionModel {
    /// The device's region and why.
    pub fn device_region(&self, source: Option<IpAddr>) -> (Option<String>, String) {
        if let Some(ip) = source {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            if let Some(n) = self.networks.iter().filter(|n| n.network.contains(&ip)).max_by_key(|n| n.network.prefix_len()) {
                return (Some(n.region.clone()), format!("source {ip} is in {} → region {}", n.network, n.region));
            }
            return (self.service_region.clone(), format!("source {ip} is in no mapped network → the service's region"));
        }
        (self.service_region.clone(), "source address unknown → the service's region".into())
    }

    fn table(&self, a: &str, b: &str) -> Option<u32> {
        self.latency
            .iter()
            .find(|l| l.from.eq_ignore_ascii_case(a) && l.to.eq_ignore_ascii_case(b))
            .or_else(|| self.latency.iter().find(|l| l.from.eq_ignore_ascii_case(b) && l.to.eq_ignore_ascii_case(a)))
            .map(|l| l.ms)
    }

    /// Latency from a device region to a hub, and where the figure came from.
    pub fn latency(&self, device_region: Option<&str>, hub: &LinkedHub) -> (u32, LatencySource) {
        let hub_region = hub.region.as_deref().or(self.service_region.as_deref());
        let in_service_region = match (device_region, self.service_region.as_deref()) {
            (Some(d), Some(s)) => d.eq_ignore_ascii_case(s),
            (None, _) => true,
            _ => false,
        };
        if in_service_region {
            if let Some(ms) = self.measured.read().ok().and_then(|m| m.get(&hub.host_name.to_ascii_lowercase()).copied()) {
                return (ms, LatencySource::Measured);
            }
        }
        match (device_region, hub_region) {
            (Some(d), Some(h)) if d.eq_ignore_ascii_case(h) => (0, LatencySource::SameRegion),
            (None, None) => (0, LatencySource::SameRegion),
            (Some(d), Some(h)) => {
                self.table(d, h).map_or((self.default_latency_ms, LatencySource::Default), |ms| (ms, LatencySource::Table))
            }
            _ => (self.default_latency_ms, LatencySource::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> RegionModel {
        let net = |n: &str, r: &str| NetworkRegion { network: n.parse().expect("parses"), region: r.into() };
        RegionModel {
            service_region: Some("lab".into()),
            networks: vec![net("10.0.0.0/8", "campus"), net("10.1.0.0/16", "factory"), net("127.0.0.2/32", "eu")],
            latency: vec![RegionLatency { from: "factory".into(), to: "lab".into(), ms: 30 }],
            default_latency_ms: 100,
            measured: Arc::default(),
        }
    }

    #[test]
    fn the_longest_prefix_names_the_region() {
        let m = model();
        assert_eq!(m.device_region(Some("10.1.2.3".parse().expect("parses"))).0.as_deref(), Some("factory"));
        assert_eq!(m.device_region(Some("10.9.2.3".parse().expect("parses"))).0.as_deref(), Some("campus"));
        assert_eq!(m.device_region(Some("::ffff:127.0.0.2".parse().expect("parses"))).0.as_deref(), Some("eu"));
        assert_eq!(m.device_region(Some("192.0.2.1".parse().expect("parses"))).0.as_deref(), Some("lab"));
        assert_eq!(m.device_region(None).0.as_deref(), Some("lab"));
    }

    #[test]
    fn latency_comes_from_region_table_default_or_measurement() {
        let m = model();
        let hub = |r: Option<&str>| LinkedHub { host_name: "h".into(), region: r.map(str::to_owned), ..Default::default() };
        assert_eq!(m.latency(Some("factory"), &hub(Some("factory"))), (0, LatencySource::SameRegion));
        assert_eq!(m.latency(Some("factory"), &hub(Some("lab"))), (30, LatencySource::Table));
        assert_eq!(m.latency(Some("lab"), &hub(Some("factory"))), (30, LatencySource::Table));
        assert_eq!(m.latency(Some("factory"), &hub(None)), (30, LatencySource::Table));
        assert_eq!(m.latency(Some("eu"), &hub(Some("factory"))), (100, LatencySource::Default));
        if let Ok(mut w) = m.measured.write() {
            w.insert("h".into(), 7);
        }
        assert_eq!(m.latency(Some("lab"), &hub(Some("factory"))), (7, LatencySource::Measured));
        assert_eq!(m.latency(Some("eu"), &hub(Some("factory"))), (100, LatencySource::Default));
    }
}
