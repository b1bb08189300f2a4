//! `dps`: the DPS Console command line, shaped like `az iot dps`.

mod client;
mod commands;
mod output;

use clap::{Parser, Subcommand};

use client::Target;
use output::Output;

#[derive(Parser)]
#[command(name = "dps", version, about = "DPS Console: a local Azure IoT Device Provisioning Service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A group of service-API commands: how to reach the service and how to print are options of the group,
/// accepted after any of its subcommands (`dps enrollment list --output table --data-dir D`).
#[derive(clap::Args)]
struct Managed<C: Subcommand> {
    #[command(flatten)]
    target: Target,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t, global = true)]
    output: Output,
    #[command(subcommand)]
    command: C,
}

#[derive(Subcommand)]
enum Command {
    /// Run the provisioning service (headless).
    Serve(Box<commands::serve::ServeArgs>),
    /// Make a cluster's shared material once: master key, CA, server certificate (for several `dps serve`).
    Init(commands::init::InitArgs),
    /// Individual enrollments.
    Enrollment(Managed<commands::enrollment::EnrollmentCommand>),
    /// Enrollment groups.
    #[command(name = "enrollment-group")]
    EnrollmentGroup(Managed<commands::group::GroupCommand>),
    /// Device registration records.
    Registration(Managed<commands::registration::RegistrationCommand>),
    /// Linked IoT hubs.
    Hub(Managed<commands::hub::HubCommand>),
    /// The master key secrets are sealed with: rotate it while the service runs.
    Keys(Managed<commands::keys::KeysCommand>),
    /// The console's admin account.
    #[command(subcommand)]
    Admin(commands::admin::AdminCommand),
    /// CA certificates: upload, proof of possession, list.
    Ca(Managed<commands::ca::CaCommand>),
    /// Credential policies: certificates issued to devices that send a CSR, and the log of those issued.
    #[command(name = "credential-policy")]
    CredentialPolicy(Managed<commands::credential_policy::CredentialPolicyCommand>),
    /// X.509 certificates: create a root, intermediate, device or verification certificate; inspect a chain.
    #[command(subcommand)]
    Cert(commands::cert::CertCommand),
    /// Compute a device's key from its enrollment group's key (§4.2).
    ComputeDeviceKey {
        /// The enrollment group's symmetric key (base64).
        #[arg(long)]
        key: String,
        /// The device's registration id, exactly as the device uses it.
        #[arg(long)]
        registration_id: String,
    },
    /// Be a device: register with a TPM or a symmetric key over HTTPS, AMQP or MQTT.
    #[command(subcommand)]
    Device(commands::device::DeviceCommand),
    /// A device's TPM 2.0: endorsement key and registration id; activate a key and sign with it.
    #[cfg(feature = "tpm")]
    #[command(subcommand)]
    Tpm(commands::tpm::TpmCommand),
    /// Scenarios and simulated devices for teaching: run a ready-made or your own scenario through the service.
    Simulate(Managed<commands::simulate::SimulateCommand>),
    /// Load generator: register many devices and report registrations per second.
    Bench(commands::bench::BenchArgs),
    /// Print how to reach the service: ID scope, endpoints, CA, service connection string.
    ConnectionInfo {
        #[command(flatten)]
        target: Target,
        /// Print only this member of endpoint.json (idScope, host, caCertificate, serviceConnectionString, ports.https).
        #[arg(long)]
        field: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// jemalloc instead of the system allocator. Under glibc's malloc a service that once held many connections
/// (an overload, a fleet reconnecting) kept that memory for good, and its per-thread arenas let resident
/// memory creep up during long steady loads; jemalloc returns unused pages to the system after a few seconds,
/// from its own background thread even when the service is idle (`make soak` measures both, RELIABILITY.md).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The TPM stack logs its own warnings and errors to standard error (e.g. a missing identity key, which the
    // command then reports itself); quiet unless asked for. Set while the process has a single thread.
    #[cfg(feature = "tpm")]
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => commands::serve::run(*a).await,
            Command::Init(a) => commands::init::run(a),
            Command::Enrollment(m) => commands::enrollment::run(m.command, &m.target, m.output).await,
            Command::EnrollmentGroup(m) => commands::group::run(m.command, &m.target, m.output).await,
            Command::Registration(m) => commands::registration::run(m.command, &m.target, m.output).await,
            Command::Hub(m) => commands::hub::run(m.command, &m.target, m.output).await,
            Command::Ca(m) => commands::ca::run(m.command, &m.target, m.output).await,
            Command::CredentialPolicy(m) => commands::credential_policy::run(m.command, &m.target, m.output).await,
            Command::Keys(m) => commands::keys::run(m.command, &m.target, m.output).await,
            Command::Admin(c) => commands::admin::run(c).await,
            Command::Cert(c) => commands::cert::run(c),
            Command::ComputeDeviceKey { key, registration_id } => {
                let k = dps_crypto::derive_device_key(&key, &registration_id).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
                println!("{k}");
                Ok(())
            }
            Command::Device(c) => commands::device::run(c).await,
            #[cfg(feature = "tpm")]
            Command::Tpm(c) => commands::tpm::run(c),
            Command::Simulate(m) => commands::simulate::run(m.command, &m.target, m.output).await,
            Command::Bench(a) => commands::bench::run(a).await,
            Command::ConnectionInfo { target, field, output } => commands::connection_info(&target, field.as_deref(), output),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique names, valid defaults) over every subcommand.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
