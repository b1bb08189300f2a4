//! A [`TpmDevice`] on a thread of its own, for async callers: a tss-esapi context is neither `Send` nor `Sync`
//! and every TPM call blocks, so one dedicated thread opens the TPM and runs the jobs sent to it, in order;
//! [`TpmWorker`] is the `Send` handle (the thread ends when the handle is dropped).
//!
//! Also what both TPM transports do with the TPM: the SAS token signed inside it (§4.1, formatted as the C SDK
//! does) and the activation of the IoT hub key from an `assigned` answer (§4.4.3 step 4).

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dps_proto::{DeviceRegistration, RegistrationOperationStatus, RegistrationStatus, TpmAttestation};
use tokio::sync::oneshot;

use crate::tpm::TpmDevice;

/// Lifetime of the SAS tokens a TPM device signs (the SDKs use 2400 s to 1 day; §4.1).
pub const SAS_LIFETIME: Duration = Duration::from_secs(3600);

type Job = Box<dyn FnOnce(&mut TpmDevice) + Send>;

/// The handle of a TPM opened on a dedicated thread. Its public keys and registration id are read once, at
/// [`open`](Self::open).
pub struct TpmWorker {
    jobs: mpsc::Sender<Job>,
    endorsement_key: Vec<u8>,
    storage_root_key: Vec<u8>,
    registration_id: String,
}

impl std::fmt::Debug for TpmWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmWorker").field("registration_id", &self.registration_id).finish_non_exhaustive()
    }
}

impl TpmWorker {
    /// Opens the TPM named by `tcti` (see [`TpmDevice::open`]), or by the environment when `None`
    /// ([`TpmDevice::from_env`]), on a new thread.
    pub async fn open(tcti: Option<String>) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, keys) = oneshot::channel::<Result<(Vec<u8>, Vec<u8>, String)>>();
        std::thread::Builder::new()
            .name("tpm".into())
            .spawn(move || {
                let device = match &tcti {
                    Some(t) => TpmDevice::open(t),
                    None => TpmDevice::from_env(),
                };
                let mut device = match device {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let info = (device.endorsement_key().to_vec(), device.storage_root_key().to_vec(), device.registration_id());
                if opened.send(Ok(info)).is_err() {
                    return;
                }
                while let Ok(job) = queue.recv() {
                    job(&mut device);
                }
            })
            .context("starting the TPM thread")?;
        let (endorsement_key, storage_root_key, registration_id) = keys.await.map_err(|_| anyhow!("the TPM thread ended"))??;
        Ok(Self { jobs, endorsement_key, storage_root_key, registration_id })
    }

    /// The EK's TPM2B_PUBLIC.
    pub fn endorsement_key(&self) -> &[u8] {
        &self.endorsement_key
    }

    /// The SRK's TPM2B_PUBLIC.
    pub fn storage_root_key(&self) -> &[u8] {
        &self.storage_root_key
    }

    /// The registration id derived from the EK (§4.4.2).
    pub fn registration_id(&self) -> &str {
        &self.registration_id
    }

    /// The `tpm` member of a register body: both public areas in base64 (§1.4).
    pub fn attestation(&self) -> TpmAttestation {
        TpmAttestation {
            endorsement_key: Some(B64.encode(&self.endorsement_key)),
            storage_root_key: Some(B64.encode(&self.storage_root_key)),
        }
    }

    /// The register body a TPM device sends: `{"registrationId", "tpm": {endorsementKey, storageRootKey}}`.
    pub fn registration(&self, registration_id: &str) -> DeviceRegistration {
        DeviceRegistration { registration_id: Some(registration_id.to_owned()), tpm: Some(self.attestation()), ..Default::default() }
    }

    /// Runs `job` on the TPM thread and waits for its result.
    pub async fn run<R: Send + 'static>(&self, job: impl FnOnce(&mut TpmDevice) -> Result<R> + Send + 'static) -> Result<R> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move |device: &mut TpmDevice| {
                let _ = done.send(job(device));
            }))
            .map_err(|_| anyhow!("the TPM thread ended"))?;
        result.await.map_err(|_| anyhow!("the TPM thread ended during a call"))?
    }

    /// Imports the HMAC key of an `authenticationKey` blob (raw bytes) as the identity key.
    pub async fn activate(&self, blob: Vec<u8>) -> Result<()> {
        self.run(move |d| d.activate_identity_key(&blob)).await
    }

    /// HMAC-SHA256 of `data` with the identity key, computed in the TPM.
    pub async fn sign(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        self.run(move |d| d.sign(&data)).await
    }

    /// A device SAS token for `{id_scope}/registrations/{registration_id}` signed in the TPM with the identity
    /// key, valid for [`SAS_LIFETIME`], shaped as the C SDK shapes it (§4.1): `sr` and `sig` encoded by
    /// [`c_url_encode`] (`%2f`), then `se`, then `skn` (the 401 body's `keyName` over HTTPS, `registration` over
    /// AMQP).
    pub async fn sas_token(&self, id_scope: &str, registration_id: &str, key_name: &str) -> Result<String> {
        #[allow(clippy::disallowed_methods)] // a device signs with its own wall clock
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let se = (now + SAS_LIFETIME).as_secs();
        let sr = c_url_encode(&format!("{id_scope}/registrations/{registration_id}"));
        let mac = self.sign(format!("{sr}\n{se}").into_bytes()).await.context("signing the SAS token in the TPM")?;
        let sig = c_url_encode(&B64.encode(mac));
        Ok(format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn={}", c_url_encode(key_name)))
    }

    /// After registering: an `assigned` answer carries the IoT hub key in a second blob,
    /// `registrationState.tpm.authenticationKey` (§1.5, §4.4.3 step 4); it is activated in the TPM, replacing the
    /// key of the challenge. Other terminal answers carry no key and are left to the caller.
    pub async fn activate_assigned(&self, status: &RegistrationOperationStatus) -> Result<()> {
        if status.status != RegistrationStatus::Assigned {
            return Ok(());
        }
        let Some(b64) = status.registration_state.as_ref().and_then(|s| s.tpm.as_ref()).and_then(|t| t.authentication_key.as_deref())
        else {
            bail!("the assigned registration carries no registrationState.tpm.authenticationKey (required for TPM devices, §1.5)");
        };
        let blob = dps_crypto::tpm::blob::from_base64(b64).context("registrationState.tpm.authenticationKey")?;
        self.activate(blob).await.context("activating the IoT hub key (registrationState.tpm.authenticationKey)")
    }
}

/// c-utility's `URL_EncodeString`, which the C SDK applies to `sr` and `sig`: ASCII letters, digits and
/// `! ( ) * - . _` stay, every other byte becomes `%` and two lower-case hex digits.
pub fn c_url_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"!()*-._".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_c_utility_does() {
        assert_eq!(c_url_encode("0ne0001A2B3/registrations/dev-1.a_b"), "0ne0001A2B3%2fregistrations%2fdev-1.a_b");
        assert_eq!(c_url_encode("ab+/c=="), "ab%2b%2fc%3d%3d");
        assert_eq!(c_url_encode("x:y é"), "x%3ay%20%c3%a9");
    }

    // §4.1 verification algorithm: a token shaped this way verifies (sr exactly as sent, lower-case escapes).
    #[test]
    fn a_c_shaped_token_verifies() {
        let key: Vec<u8> = (0u8..32).collect();
        let sr = c_url_encode("0ne0001A2B3/registrations/dev1");
        let sig = c_url_encode(&dps_crypto::sign(&key, &sr, 1_735_689_600));
        let token = format!("SharedAccessSignature sr={sr}&sig={sig}&se=1735689600&skn=registration");
        let parsed = dps_crypto::SasToken::parse(&token).expect("token");
        assert!(parsed.verify(&key));
        assert_eq!(parsed.resource().expect("sr"), "0ne0001A2B3/registrations/dev1");
    }
}
