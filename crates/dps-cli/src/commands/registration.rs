//! `dps registration show|list|delete|explain` (like `az iot dps enrollment registration` / `az iot dps
//! enrollment-group registration`).

use anyhow::Result;
use dps_proto::trace::{EnrollmentRef, RegistrationTrace};
use dps_proto::DeviceRegistrationState;
use reqwest::Method;

use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

#[derive(Debug, clap::Subcommand)]
pub enum RegistrationCommand {
    /// Show a device's registration record.
    Show {
        #[arg(long)]
        registration_id: String,
    },
    /// List registration records (of one enrollment group with --group-id).
    List {
        #[arg(long, alias = "enrollment-id")]
        group_id: Option<String>,
        #[arg(long)]
        top: Option<usize>,
    },
    /// Delete a registration record (the hub identity stays, as in Azure).
    Delete {
        #[arg(long)]
        registration_id: String,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Run the device's registration again now (current enrollment and hubs, its re-provisioning policy),
    /// without the device; it learns its hub at its next registration. Prints the decision, as `explain`.
    Reprovision {
        /// The registration id.
        #[arg(long = "registration-id")]
        registration_id: String,
    },
    /// Explain how the device's last registration was decided.
    Explain {
        /// The registration id (also accepted positionally).
        #[arg(long = "registration-id", required_unless_present = "id")]
        registration_id: Option<String>,
        #[arg(conflicts_with = "registration_id")]
        id: Option<String>,
    },
}

const COLUMNS: &[(&str, &str)] = &[
    ("REGISTRATION ID", "/registrationId"),
    ("STATUS", "/status"),
    ("SUBSTATUS", "/substatus"),
    ("HUB", "/assignedHub"),
    ("DEVICE ID", "/deviceId"),
    ("ERROR", "/errorCode"),
    ("UPDATED", "/lastUpdatedDateTimeUtc"),
];

pub async fn run(cmd: RegistrationCommand, target: &Target, output: Output) -> Result<()> {
    match cmd {
        RegistrationCommand::Show { registration_id } => {
            let client = Client::new(target)?;
            let r: DeviceRegistrationState =
                client.call::<(), _>(Method::GET, &format!("/registrations/{}", seg(&registration_id)), None, &[]).await?;
            print(output, &r, COLUMNS);
        }
        RegistrationCommand::List { group_id, top } => {
            let client = Client::new(target)?;
            let path = match &group_id {
                Some(g) => format!("/registrations/{}/query", seg(g)),
                None => "/registrations/query".to_owned(),
            };
            let list: Vec<DeviceRegistrationState> = client.query_all(&path, top).await?;
            print(output, &list, COLUMNS);
        }
        RegistrationCommand::Delete { registration_id, etag } => {
            let client = Client::new(target)?;
            let h: Vec<(&str, String)> = etag.map(|e| ("if-match", e)).into_iter().collect();
            client.send::<()>(Method::DELETE, &format!("/registrations/{}", seg(&registration_id)), None, &h).await?;
            eprintln!("deleted the registration record of '{registration_id}'");
        }
        RegistrationCommand::Reprovision { registration_id } => {
            let client = Client::new(target)?;
            let path = format!("/registrations/{}/reprovision", seg(&registration_id));
            let t: serde_json::Value = client.call::<(), _>(Method::POST, &path, None, &[]).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default()),
                Output::Table => explain_text(&t),
            }
        }
        RegistrationCommand::Explain { registration_id, id } => {
            let client = Client::new(target)?;
            let rid = registration_id.or(id).unwrap_or_default();
            let t: serde_json::Value = client.call::<(), _>(Method::GET, &format!("/registrations/{}/trace", seg(&rid)), None, &[]).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default()),
                Output::Table => explain_text(&t),
            }
        }
    }
    Ok(())
}

/// The decision trace in words.
fn explain_text(answer: &serde_json::Value) {
    let a = RegistrationTrace::from_value(answer);
    let state = a.registration_state.unwrap_or_default();
    let trace = a.trace.unwrap_or_default();
    let (kind, id) = match &a.enrollment {
        Some(EnrollmentRef::Individual(id)) => ("individual", id.as_str()),
        Some(EnrollmentRef::Group(id)) => ("group", id.as_str()),
        None => ("", ""),
    };
    println!("registration  {}", state.registration_id.as_deref().unwrap_or_default());
    println!(
        "status        {} {}",
        state.status.map(|s| s.as_str()).unwrap_or_default(),
        state.substatus.map(|s| s.as_str()).unwrap_or_default()
    );
    println!("attestation   {}", a.attestation.map(|t| t.as_str()).unwrap_or_default());
    println!("protocol      {}", trace.protocol.as_deref().unwrap_or_default());
    println!("enrollment    {kind} {id}");
    if let Some(a) = &trace.allocation {
        println!("policy        {}", a.policy());
        for c in a.candidates() {
            println!("  candidate   {:<32} weight {:>4}  score {:.4}", c.hub, c.weight, c.score);
        }
        println!("decision      {}", a.reason().unwrap_or_default());
    }
    println!("assigned hub  {}", state.assigned_hub.as_deref().unwrap_or_default());
    println!("connector     {}", trace.connector.as_ref().map(|c| c.result.as_str()).unwrap_or_default());
    if let Some(e) = &trace.error {
        println!("error         {} {}", e.code, e.message);
    }
    if let Some(w) = &trace.why {
        println!("why           {w}");
    }
}
