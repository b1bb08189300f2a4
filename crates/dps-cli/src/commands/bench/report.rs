//! The summary of a run (text and JSON) and its chart (SVG: throughput over time and the latency CDF of the
//! service and the ceiling). SVG because plotters' SVG backend writes text as text — no font files are read,
//! so the chart is drawn the same on a machine without fonts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use serde::Serialize;

use super::load::Recorded;

/// CPU and memory of the process that answered (when it is known: spawned, or `--server-pid`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1000: f64,
    #[serde(rename = "peakRssKiB")]
    pub peak_rss_kib: u64,
}

/// One target's figures.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub target: String,
    pub registrations: u64,
    pub failed: u64,
    pub seconds: f64,
    pub registrations_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
    pub server: Option<Server>,
    /// Registrations finished in each second of the run.
    pub per_second: Vec<u64>,
    /// The same in tenths of a second (the chart's resolution).
    pub per_tenth_second: Vec<u64>,
    /// (latency ms, fraction of registrations at or below it).
    pub cdf: Vec<(f64, f64)>,
}

impl Phase {
    pub fn new(target: &str, r: Recorded, server: Option<(u32, f64, u64)>) -> Self {
        let q = |p: f64| r.latency.value_at_quantile(p) as f64 / 1000.0;
        let mut cdf = Vec::new();
        if r.ok > 0 {
            for v in r.latency.iter_quantiles(4) {
                cdf.push((v.value_iterated_to() as f64 / 1000.0, v.quantile_iterated_to()));
            }
        }
        Self {
            target: target.to_owned(),
            registrations: r.ok,
            failed: r.failed,
            seconds: r.seconds,
            registrations_per_second: r.ok as f64 / r.seconds.max(1e-9),
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: r.latency.max() as f64 / 1000.0,
            errors: r.errors,
            server: server.map(|(pid, cpu, rss)| Server {
                pid,
                cpu_seconds: cpu,
                cpu_seconds_per_1000: cpu * 1000.0 / (r.ok.max(1) as f64),
                peak_rss_kib: rss,
            }),
            per_second: r.per_tenth.chunks(10).map(|c| c.iter().sum()).collect(),
            per_tenth_second: r.per_tenth,
            cdf,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub mode: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    /// Open loop: the generator's bound on devices in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// HTTPS keep-alive: loopback source addresses the connections were spread over.
    pub source_addresses: u8,
    pub transport: super::workload::Transport,
    pub attestation: super::workload::Attestation,
    pub poll: super::workload::Poll,
    pub devices: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub import: Option<super::workload::Import>,
    pub machine: serde_json::Value,
    pub service: Phase,
    pub ceiling: Option<Phase>,
    /// The service's registrations per second as a fraction of the ceiling's.
    pub ratio: Option<f64>,
    /// Why there is no ceiling (AMQP, `--no-ceiling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_note: Option<String>,
}

fn line(p: &Phase) -> String {
    let mut s = format!(
        "{:<8} {:>7} ok {:>5} failed {:>9.1}/s  p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        p.target, p.registrations, p.failed, p.registrations_per_second, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
    );
    if let Some(sv) = &p.server {
        s.push_str(&format!(
            "\n         server pid {}: {:.2} CPU-s ({:.3} CPU-s per 1,000 registrations), peak RSS {:.1} MiB",
            sv.pid,
            sv.cpu_seconds,
            sv.cpu_seconds_per_1000,
            sv.peak_rss_kib as f64 / 1024.0
        ));
    }
    for (reason, n) in &p.errors {
        s.push_str(&format!("\n         {n} × {reason}"));
    }
    s
}

impl Summary {
    pub fn text(&self) -> String {
        let mut out = format!(
            "dps bench: {} loop ({}), {:?} over {:?}\n",
            self.mode,
            match (self.concurrency, self.rate) {
                (Some(c), _) => format!("{c} in flight"),
                (_, Some(r)) => format!("{r} arrivals/s"),
                _ => String::new(),
            },
            self.attestation,
            self.transport
        );
        if let Some(i) = &self.import {
            out.push_str(&format!(
                "import   {} individual enrollments in {:.2} s ({:.0}/s, bulk of {}, {} in flight), {} extra groups\n",
                i.enrollments, i.seconds, i.per_second, i.batch, i.parallel, i.groups
            ));
        }
        out.push_str(&line(&self.service));
        out.push('\n');
        if let Some(c) = &self.ceiling {
            out.push_str(&line(c));
            out.push('\n');
        }
        match (self.ratio, &self.ceiling_note) {
            (Some(r), _) => {
                out.push_str(&format!("ratio    {:.1} % of the bare ceiling (registrations per second)\n", r * 100.0));
                if let (Some(_), Some(c)) = (self.rate, &self.ceiling) {
                    // Open loop: both are offered the same rate; what differs is the latency.
                    out.push_str(&format!(
                        "latency  p99 {:.2} ms against the ceiling's {:.2} ms at the same offered rate\n",
                        self.service.p99_ms, c.p99_ms
                    ));
                }
            }
            (None, Some(n)) => out.push_str(&format!("ratio    none: {n}\n")),
            _ => {}
        }
        out
    }
}

/// Draws throughput over time (top) and the latency CDF (bottom) of each phase into an SVG file.
pub fn chart(path: &Path, summary: &Summary) -> Result<()> {
    let phases: Vec<&Phase> = std::iter::once(&summary.service).chain(summary.ceiling.as_ref()).collect();
    let colours = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("chart: {e}");
    root.fill(&WHITE).map_err(e)?;
    let (top, bottom) = root.split_vertically(400);

    // Rates over tenths of a second, so a short ceiling run is a line too.
    let secs = phases.iter().map(|p| p.per_tenth_second.len()).max().unwrap_or(1).max(1) as f64 / 10.0;
    let peak = phases.iter().flat_map(|p| p.per_tenth_second.iter().copied()).max().unwrap_or(1).max(1) * 10;
    let mut c = ChartBuilder::on(&top)
        .caption("Registrations per second (over tenths of a second)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..secs, 0f64..peak as f64 * 1.1)
        .map_err(e)?;
    c.configure_mesh().x_desc("seconds since start").y_desc("registrations/s").draw().map_err(e)?;
    for (p, colour) in phases.iter().zip(colours) {
        let pts: Vec<(f64, f64)> = p.per_tenth_second.iter().enumerate().map(|(t, n)| (t as f64 / 10.0 + 0.05, *n as f64 * 10.0)).collect();
        c.draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(e)?
            .label(format!("{} ({:.0}/s)", p.target, p.registrations_per_second))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;

    let lo = phases.iter().flat_map(|p| p.cdf.first()).map(|(ms, _)| *ms).fold(f64::MAX, f64::min).clamp(0.01, 1e6);
    let hi = phases.iter().flat_map(|p| p.cdf.last()).map(|(ms, _)| *ms).fold(0.0, f64::max).max(lo * 10.0);
    let mut c = ChartBuilder::on(&bottom)
        .caption("Latency CDF (register → assigned)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0f64..1.0)
        .map_err(e)?;
    c.configure_mesh().x_desc("latency, ms (log)").y_desc("fraction ≤ latency").draw().map_err(e)?;
    for (p, colour) in phases.iter().zip(colours) {
        c.draw_series(LineSeries::new(p.cdf.iter().copied(), colour.stroke_width(2)))
            .map_err(e)?
            .label(format!("{} (p50 {:.1} ms, p99 {:.1} ms)", p.target, p.p50_ms, p.p99_ms))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
