//! Crash points for the crash-consistency tests. Built only with the `failpoints` feature (the dps-service
//! test build); otherwise [`hit`] does nothing. With the feature, in a process started with
//! `DPS_FAILPOINT=<name>` the task that reaches that point prints `FAILPOINT <name>` on stdout and never
//! continues (the rest of the process goes on: a 202 already on its way still leaves), so the test can kill
//! the process there with SIGKILL, exactly as a power cut would.
//!
//! Points: `engine.accepted` (the operation is on disk and its 202 is on its way), `engine.identity-created`
//! (the hub identity exists, the outcome is not written), `engine.finished` (record and operation written).

#[cfg(feature = "failpoints")]
pub async fn hit(name: &'static str) {
    use std::io::Write;
    if std::env::var("DPS_FAILPOINT").is_ok_and(|v| v == name) {
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "FAILPOINT {name}");
            let _ = out.flush();
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hit(_name: &'static str) {}
