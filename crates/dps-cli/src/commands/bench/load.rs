//! The two ways of offering load, and what is recorded while it runs.
//!
//! - **Closed loop** (`--concurrency N`): N devices in flight; each registers, polls at once until the
//!   operation ends, and the next device starts. Measures the most the target answers (throughput).
//! - **Open loop** (`--rate R`): device `i` is due at `start + i / R`, whether or not earlier ones finished;
//!   its latency counts from that due time, so a target that falls behind shows it in the latency instead of
//!   slowing the generator down (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use super::workload::Devices;

/// How load is offered; the run ends after `devices` registrations or `duration`, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub mode: Mode,
    pub devices: Option<u64>,
    pub duration: Option<Duration>,
    /// Closed loop with devices that wait as the SDKs do (`--poll retry-after`): the devices start spread over
    /// this time (not all in the first millisecond), and one that failed (a 429 among them) waits this long before
    /// the next starts — a refused device backs off instead of coming straight back.
    pub pace: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed {
        concurrency: usize,
    },
    /// `max_in_flight`: the generator's own bound; an arrival due while that many are in flight starts when
    /// one ends (its latency still counts from its due time), so an overloaded target cannot make the
    /// generator hold unbounded tasks and connections.
    Open {
        rate: f64,
        max_in_flight: usize,
    },
}

/// What one target's run produced.
pub struct Recorded {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Latency of the successful registrations, microseconds.
    pub latency: Histogram<u64>,
    /// Registrations finished in each tenth of a second of the run.
    pub per_tenth: Vec<u64>,
    /// Failures by DPS error code or reason.
    pub errors: BTreeMap<String, u64>,
}

struct Recorder {
    start: Instant,
    ok: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    per_tenth: Mutex<Vec<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Recorder {
    fn new(start: Instant) -> anyhow::Result<Self> {
        Ok(Self {
            start,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
            per_tenth: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    fn record(&self, due: Instant, result: anyhow::Result<()>) {
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let us = now.duration_since(due).as_micros().clamp(1, 600_000_000) as u64;
                if let Ok(mut h) = self.latency.lock() {
                    let _ = h.record(us);
                }
                let tenth = now.duration_since(self.start).as_millis() as usize / 100;
                if let Ok(mut v) = self.per_tenth.lock() {
                    if v.len() <= tenth {
                        v.resize(tenth + 1, 0);
                    }
                    if let Some(c) = v.get_mut(tenth) {
                        *c += 1;
                    }
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut m) = self.errors.lock() {
                    *m.entry(classify(&e)).or_insert(0) += 1;
                }
            }
        }
    }

    fn done(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// The DPS error code in an error's text (`… (401002)`, `"errorCode":401002`, `error 400209`), or else its
/// reason with the device's name and numbers taken out, so equal failures count together.
pub fn classify(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let end = (i..bytes.len()).find(|&j| !bytes[j].is_ascii_digit()).unwrap_or(bytes.len());
            if end - i == 6 && matches!(bytes[i], b'4' | b'5') && (end == bytes.len() || !bytes[end].is_ascii_alphanumeric()) {
                return format!("error {}", &text[i..end]);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    let reason: String = text
        .split_whitespace()
        .filter(|w| !w.starts_with("bench-") && !w.chars().any(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ");
    reason.chars().take(100).collect()
}

fn bar(plan: &Plan, label: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let (len, template) = match (plan.devices, plan.duration) {
        (Some(n), None) => (n, "{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} {msg}"),
        (_, Some(d)) => (d.as_secs().max(1), "{prefix:>8} [{bar:40}] {pos}/{len} s {msg}"),
        (None, None) => (0, "{prefix:>8} {pos} {msg}"),
    };
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_owned());
    pb
}

/// Runs the plan against `devices`; `label` names the target on the progress bar.
pub async fn run(devices: Arc<Devices>, plan: Plan, label: &str) -> anyhow::Result<Recorded> {
    let start = Instant::now();
    let rec = Arc::new(Recorder::new(start)?);
    let deadline = plan.duration.map(|d| start + d);
    let pb = bar(&plan, label);
    let ticker = {
        let (rec, pb, by_time) = (Arc::clone(&rec), pb.clone(), plan.duration.is_some());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let done = rec.done();
                let secs = rec.start.elapsed().as_secs_f64();
                pb.set_position(if by_time { secs as u64 } else { done });
                pb.set_message(format!(
                    "{done} done, {:.0}/s, {} failed",
                    done as f64 / secs.max(1e-3),
                    rec.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let more = move |i: u64, now: Instant| plan.devices.is_none_or(|n| i < n) && deadline.is_none_or(|d| now < d);
    match plan.mode {
        Mode::Closed { concurrency } => {
            let next = Arc::new(AtomicU64::new(0));
            let mut workers = tokio::task::JoinSet::new();
            let workers_n = concurrency.max(1);
            for w in 0..workers_n {
                let (devices, rec, next) = (Arc::clone(&devices), Arc::clone(&rec), Arc::clone(&next));
                let pace = plan.pace;
                workers.spawn(async move {
                    if let Some(p) = pace {
                        tokio::time::sleep(p.mul_f64(w as f64 / workers_n as f64)).await;
                    }
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        if !more(i, t) {
                            break;
                        }
                        let r = devices.register(i).await.map(|_| ());
                        let failed = r.is_err();
                        rec.record(t, r);
                        if let (true, Some(p)) = (failed, pace) {
                            tokio::time::sleep(p).await;
                        }
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Mode::Open { rate, max_in_flight } => {
            let mut inflight = tokio::task::JoinSet::new();
            let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
            let mut i = 0u64;
            loop {
                let due = start + Duration::from_secs_f64(i as f64 / rate.max(1e-6));
                if !more(i, due) {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let (devices, rec) = (Arc::clone(&devices), Arc::clone(&rec));
                inflight.spawn(async move {
                    let r = devices.register(i).await.map(|_| ());
                    rec.record(due, r);
                    drop(slot);
                });
                while inflight.try_join_next().is_some() {}
                i += 1;
            }
            while inflight.join_next().await.is_some() {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    ticker.abort();
    pb.finish_and_clear();
    let latency = rec.latency.lock().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone());
    let per_tenth = std::mem::take(&mut *rec.per_tenth.lock().unwrap_or_else(|p| p.into_inner()));
    let errors = std::mem::take(&mut *rec.errors.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Recorded { ok: rec.ok.load(Ordering::Relaxed), failed: rec.failed.load(Ordering::Relaxed), seconds, latency, per_tenth, errors })
}
