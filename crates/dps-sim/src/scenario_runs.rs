//! Scenarios run from the console (#16 item 5): the built-in scenarios and the trainer's own (their files are
//! the caller's to keep) with the last run of each, as the Simulate page shows them — state, and each step with
//! where its devices went and what was not as expected.
//! A run goes through the same [`Runner`] as `dps simulate`; this keeps its view as the events arrive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use dps_proto::simulation::{ScenarioState, ScenarioStepView, ScenarioView};

use crate::devices::DeviceTarget;
use crate::runner::{Event, Report, Runner};
use crate::scenario::{Scenario, BUILT_IN};
use crate::ServiceApi;

/// The last run of each scenario started from the console.
#[derive(Default)]
pub struct ScenarioRuns {
    runs: Mutex<BTreeMap<String, ScenarioView>>,
}

impl ScenarioRuns {
    fn runs(&self) -> MutexGuard<'_, BTreeMap<String, ScenarioView>> {
        self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every scenario of `scenarios` (the built-in ones, then the trainer's `own`) with its last run.
    pub fn list(&self, own: &[Scenario]) -> Vec<ScenarioView> {
        let runs = self.runs();
        let built_in = BUILT_IN.iter().filter_map(|(name, _)| Some((Scenario::built_in(name)?.ok()?, false)));
        built_in
            .chain(own.iter().map(|s| (s.clone(), true)))
            .map(|(s, own)| {
                let view = runs.get(&s.name).cloned().unwrap_or_else(|| idle(&s));
                ScenarioView { own, ..view }
            })
            .collect()
    }

    pub fn get(&self, own: &[Scenario], name: &str) -> Option<ScenarioView> {
        self.list(own).into_iter().find(|v| v.name.eq_ignore_ascii_case(name))
    }

    /// Marks `s` running (refused while a run of it is still going).
    pub fn begin(&self, s: &Scenario) -> Result<ScenarioView, &'static str> {
        let mut runs = self.runs();
        if runs.get(&s.name).is_some_and(|v| v.state == Some(ScenarioState::Running)) {
            return Err("this scenario is running already");
        }
        let view = ScenarioView { state: Some(ScenarioState::Running), ..idle(s) };
        runs.insert(s.name.clone(), view.clone());
        Ok(view)
    }

    /// Forgets the last run of `name` (after a reset).
    pub fn forget(&self, name: &str) {
        self.runs().remove(name);
    }

    fn on_event(&self, name: &str, e: Event<'_>) {
        let mut runs = self.runs();
        let Some(view) = runs.get_mut(name) else { return };
        match e {
            Event::Step { index, step, devices } => view.steps.push(ScenarioStepView {
                index,
                say: step.say.clone(),
                action: "…".into(),
                devices: u32::try_from(devices).unwrap_or(u32::MAX),
                per_hub: BTreeMap::new(),
                problems: None,
                sample: None,
            }),
            Event::StepDone(r) => {
                if let Some(s) = view.steps.iter_mut().find(|s| s.index == r.index) {
                    (s.action, s.per_hub, s.problems) = (r.action.clone(), r.per_hub.clone(), Some(r.problems.clone()));
                    s.sample = r.sample.clone();
                }
            }
            Event::Device(_) => {}
        }
    }

    fn end(&self, name: &str, result: anyhow::Result<Report>) {
        let mut runs = self.runs();
        let Some(view) = runs.get_mut(name) else { return };
        match result {
            Ok(report) => view.state = Some(if report.passed() { ScenarioState::Passed } else { ScenarioState::Failed }),
            Err(e) => (view.state, view.error) = (Some(ScenarioState::Error), Some(format!("{e:#}"))),
        }
    }
}

fn idle(s: &Scenario) -> ScenarioView {
    ScenarioView {
        name: s.name.clone(),
        title: s.title.clone(),
        summary: s.summary.clone(),
        own: false,
        state: None,
        steps: Vec::new(),
        error: None,
    }
}

/// Runs `s` through `api` (reset, set-up, every step) with devices against `target`, keeping its view in `runs`.
pub async fn run(runs: Arc<ScenarioRuns>, api: Box<dyn ServiceApi>, target: DeviceTarget, s: Scenario) {
    let tell = {
        let (runs, name) = (Arc::clone(&runs), s.name.clone());
        move |e: Event<'_>| runs.on_event(&name, e)
    };
    let runner = Runner { api: api.as_ref(), target, on_event: &tell };
    let result = runner.run(&s).await;
    runs.end(&s.name, result);
}
