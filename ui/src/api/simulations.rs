//! Simulated devices (`/simulations…`): start a run, read it and one device's flow, continue a stepped device,
//! clean up after a run, forget a run.

use dps_proto::simulation::{ContinueRequest, ScenarioView, SimDevice, Simulation, SimulationCleanUp, SimulationRequest};

use super::{decode, seg, ApiClient, ApiError};

impl ApiClient {
    /// `GET /simulations`: the runs, newest first.
    pub async fn simulations(&self) -> Result<Vec<Simulation>, ApiError> {
        self.get_json("/simulations", &[]).await
    }

    /// `POST /simulations`: starts the devices; the run with its devices.
    pub async fn start_simulation(&self, request: &SimulationRequest) -> Result<Simulation, ApiError> {
        self.send_json("POST", "/simulations", request).await
    }

    /// `GET /simulations/{id}`; the first `flows` devices with every step of their flow (`?flows=`).
    pub async fn simulation(&self, id: &str, flows: usize) -> Result<Simulation, ApiError> {
        let query = if flows == 0 { vec![] } else { vec![("flows", flows.to_string())] };
        self.get_json(&format!("/simulations/{}", seg(id)), &query).await
    }

    /// `GET /simulations/{id}/devices/{registrationId}`: the device with every step of its flow.
    pub async fn simulated_device(&self, id: &str, registration_id: &str) -> Result<SimDevice, ApiError> {
        self.get_json(&format!("/simulations/{}/devices/{}", seg(id), seg(registration_id)), &[]).await
    }

    /// `POST /simulations/{id}/devices/{registrationId}/continue` (or the whole run's when `registration_id` is
    /// `None`): the next step, or to the end.
    pub async fn continue_simulation(&self, id: &str, registration_id: Option<&str>, to_end: bool) -> Result<Simulation, ApiError> {
        let path = match registration_id {
            Some(r) => format!("/simulations/{}/devices/{}/continue", seg(id), seg(r)),
            None => format!("/simulations/{}/continue", seg(id)),
        };
        self.send_json("POST", &path, &ContinueRequest { to_end }).await
    }

    /// `DELETE /simulations/{id}`.
    pub async fn delete_simulation(&self, id: &str) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/simulations/{}", seg(id)), &[], None).await
    }

    /// `POST /simulations/{id}/cleanUp`: removes what a finished run left (records, hub identities, its TPM
    /// devices' enrollments), then forgets it; what was removed.
    pub async fn clean_up_simulation(&self, id: &str) -> Result<SimulationCleanUp, ApiError> {
        self.send_json("POST", &format!("/simulations/{}/cleanUp", seg(id)), &serde_json::json!({})).await
    }

    /// `POST /scenarios`: keeps a scenario file of the trainer's own (TOML text); its view.
    pub async fn upload_scenario(&self, toml: &str) -> Result<ScenarioView, ApiError> {
        self.send_json("POST", "/scenarios", &serde_json::json!({ "file": toml })).await
    }

    /// `DELETE /scenarios/{name}`: resets what a scenario of the trainer's made, then forgets it.
    pub async fn delete_scenario(&self, name: &str) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/scenarios/{}", seg(name)), &[], None).await
    }

    /// `GET /scenarios`: the built-in scenarios and the trainer's own, with their last run.
    pub async fn scenarios(&self) -> Result<Vec<ScenarioView>, ApiError> {
        self.get_json("/scenarios", &[]).await
    }

    /// `POST /scenarios/{name}/run`: starts a run in the background.
    pub async fn run_scenario(&self, name: &str) -> Result<ScenarioView, ApiError> {
        decode(&self.call("POST", &format!("/scenarios/{}/run", seg(name)), &[], &[], None).await?)
    }

    /// `POST /scenarios/{name}/reset`: removes what it made.
    pub async fn reset_scenario(&self, name: &str) -> Result<ScenarioView, ApiError> {
        decode(&self.call("POST", &format!("/scenarios/{}/reset", seg(name)), &[], &[], None).await?)
    }
}
