//! A TPM 2.0 device for TPM attestation (§4.4), through tss-esapi: the EK and SRK of §4.4.1 (created and
//! persisted when missing), the registration id of §4.4.2, the activation of an `authenticationKey` blob
//! (§4.4.3 steps 1–4) and signing with the imported HMAC key (step 6), including SAS tokens (§4.1).
//!
//! Every call is blocking TPM I/O, and a tss-esapi `Context` is neither `Send` nor `Sync`: async callers open
//! and use a [`TpmDevice`] inside one `tokio::task::spawn_blocking` closure (keep the TCTI string, not the device)
//! or own it in a dedicated thread. The device works without a resource manager (swtpm, `/dev/tpm0`): every
//! transient object and session it creates is flushed before the call returns, on success and on error.

use std::str::FromStr;

use anyhow::{anyhow, bail, Context as _, Result};
use dps_crypto::tpm::{self, BlobParts, RsaPublic, EK_HANDLE, IDENTITY_KEY_HANDLE, SRK_HANDLE};
use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    CapabilityData, Data, EncryptedSecret, IdObject, MaxBuffer, Private, Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder,
    RsaExponent, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

/// Largest input of one TPM2_HMAC (TPM2B_MAX_BUFFER; `TPM_PT_INPUT_BUFFER` is 1024 on common TPMs).
pub const MAX_HMAC_INPUT: usize = 1024;

/// A TPM with the DPS keys of §4.4.1. See the module documentation for threading.
pub struct TpmDevice {
    ctx: Context,
    ek: Vec<u8>,
    srk: Vec<u8>,
}

impl std::fmt::Debug for TpmDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmDevice").field("registration_id", &self.registration_id()).finish_non_exhaustive()
    }
}

impl TpmDevice {
    /// Opens the TPM named by a TCTI string — `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`,
    /// `tabrmd:` — and makes sure the EK (0x81010001) and SRK (0x81000001) exist, creating and persisting them
    /// from the SDK templates when missing.
    pub fn open(tcti: &str) -> Result<Self> {
        let conf = TctiNameConf::from_str(tcti).map_err(|e| anyhow!("TCTI '{tcti}': {e}"))?;
        Self::with_tcti(conf).with_context(|| format!("TPM at '{tcti}'"))
    }

    /// [`open`](Self::open) with the TCTI from `TPM2TOOLS_TCTI`, else `TCTI`, else `TEST_TCTI`.
    pub fn from_env() -> Result<Self> {
        let conf =
            TctiNameConf::from_environment_variable().map_err(|e| anyhow!("no usable TCTI in TPM2TOOLS_TCTI, TCTI or TEST_TCTI: {e}"))?;
        Self::with_tcti(conf)
    }

    fn with_tcti(conf: TctiNameConf) -> Result<Self> {
        let mut ctx = Context::new(conf).map_err(|e| anyhow!("opening the TPM: {e}"))?;
        let ek = ensure_key(&mut ctx, EK_HANDLE, "EK", create_ek)?;
        let srk = ensure_key(&mut ctx, SRK_HANDLE, "SRK", create_srk)?;
        Ok(Self { ctx, ek, srk })
    }

    /// The EK's TPM2B_PUBLIC, as sent to the service (base64 in JSON, raw in AMQP SASL).
    pub fn endorsement_key(&self) -> &[u8] {
        &self.ek
    }

    /// The SRK's TPM2B_PUBLIC.
    pub fn storage_root_key(&self) -> &[u8] {
        &self.srk
    }

    /// The registration id the SDKs derive from the EK (§4.4.2).
    pub fn registration_id(&self) -> String {
        tpm::registration_id(&self.ek)
    }

    /// Imports the HMAC key of an `authenticationKey` blob (raw bytes, §4.4.4) as the identity key at
    /// 0x81000100, replacing the previous one: §4.4.3 steps 1–4 (PolicySecret(endorsement) session,
    /// ActivateCredential(SRK, EK) → W, Import under the SRK with W, Load, EvictControl old then new).
    /// A damaged blob or one made for another TPM is an error; the previous key then stays in place.
    pub fn activate_identity_key(&mut self, blob: &[u8]) -> Result<()> {
        let parts = BlobParts::parse(blob).context("authenticationKey")?;
        let credential = IdObject::try_from(parts.credential_blob).map_err(|e| anyhow!("item 1 (credential blob): {e}"))?;
        let secret = EncryptedSecret::try_from(parts.encrypted_secret).map_err(|e| anyhow!("item 2 (encrypted secret): {e}"))?;
        let duplicate = Private::try_from(parts.duplicate).map_err(|e| anyhow!("item 3 (duplicate): {e}"))?;
        let seed = EncryptedSecret::try_from(parts.encrypted_seed).map_err(|e| anyhow!("item 4 (encrypted seed): {e}"))?;
        let public = Public::unmarshall(parts.public).map_err(|e| anyhow!("item 5 (HMAC key public area): {e}"))?;

        let ek = persistent(&mut self.ctx, EK_HANDLE)?;
        let srk = persistent(&mut self.ctx, SRK_HANDLE)?;
        let w = activate_credential(&mut self.ctx, srk, ek, credential, secret);
        let result = w.and_then(|w| {
            let w = Data::try_from(w).map_err(|e| anyhow!("the credential is not a wrap key: {e}"))?;
            import_and_persist(&mut self.ctx, srk, w, public, duplicate, seed)
        });
        close(&mut self.ctx, ek);
        close(&mut self.ctx, srk);
        result
    }

    /// HMAC-SHA256 of `data` with the identity key (TPM2_HMAC on 0x81000100; §4.4.3 step 6).
    ///
    /// tss-esapi 7.7 does not wrap HMAC_Start / SequenceUpdate / SequenceComplete (and this workspace forbids
    /// `unsafe`), so inputs longer than [`MAX_HMAC_INPUT`] bytes are refused; SAS inputs (`sr + "\n" + se`) are
    /// a few hundred bytes at most.
    pub fn sign(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() > MAX_HMAC_INPUT {
            bail!("cannot HMAC {} bytes in the TPM: at most {MAX_HMAC_INPUT} (HMAC sequences are not available)", data.len());
        }
        let buffer = MaxBuffer::try_from(data).map_err(|e| anyhow!("HMAC input: {e}"))?;
        let key = persistent(&mut self.ctx, IDENTITY_KEY_HANDLE).context("no identity key: activate a blob first")?;
        let mac = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| ctx.hmac(key, buffer, HashingAlgorithm::Sha256))
            .map_err(|e| anyhow!("TPM2_HMAC with the identity key: {e}"));
        close(&mut self.ctx, key);
        Ok(mac?.value().to_vec())
    }

    /// A device SAS token for `{id_scope}/registrations/{registration_id}` signed by the TPM, formatted as
    /// [`dps_crypto::build_token`] does (`sr` with `%2F`, `skn` when given — `registration` over AMQP, the
    /// `keyName` of the 401 body over HTTPS, §4.1). `expiry` is in seconds since the epoch.
    pub fn sas_token(&mut self, id_scope: &str, registration_id: &str, expiry: u64, key_name: Option<&str>) -> Result<String> {
        let resource = format!("{id_scope}/registrations/{registration_id}");
        dps_crypto::build_token_signed_by(&resource, expiry, key_name, |msg| self.sign(msg))
    }
}

/// Reads the public area at `handle`, creating and persisting the key with `create` when the handle is empty.
fn ensure_key(ctx: &mut Context, handle: u32, what: &str, create: fn(&mut Context) -> Result<KeyHandle>) -> Result<Vec<u8>> {
    if !is_persistent(ctx, handle)? {
        let transient = create(ctx).with_context(|| format!("creating the {what}"))?;
        let persisted = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, transient.into(), persistent_handle(handle)?)
            })
            .map_err(|e| anyhow!("persisting the {what} at {handle:#010x}: {e}"));
        flush(ctx, transient.into());
        close(ctx, persisted?);
    }
    let object = persistent(ctx, handle)?;
    let public = ctx.read_public(object.into()).map_err(|e| anyhow!("reading the {what} at {handle:#010x}: {e}"));
    close(ctx, object);
    let tpmt = public?.0.marshall().map_err(|e| anyhow!("marshalling the {what}'s public area: {e}"))?;
    let tpm2b = [u16::try_from(tpmt.len()).context("public area size")?.to_be_bytes().as_slice(), &tpmt].concat();
    RsaPublic::from_tpm2b(&tpm2b).with_context(|| format!("the {what} at {handle:#010x}"))?;
    Ok(tpm2b)
}

/// The TCG default RSA-2048 EK (attributes 0x000300B2, PolicySecret(endorsement), AES-128-CFB).
fn create_ek(ctx: &mut Context) -> Result<KeyHandle> {
    ek::create_ek_object_2(ctx, AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048), None).map_err(|e| anyhow!("{e}"))
}

/// The SDKs' SRK: RSA-2048, SHA-256, attributes 0x00030472 (with noDA), AES-128-CFB, scheme NULL, empty policy.
fn create_srk(ctx: &mut Context) -> Result<KeyHandle> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    let template = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(
            PublicRsaParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                RsaKeyBits::Rsa2048,
                RsaExponent::default(),
            )
            .build()
            .map_err(|e| anyhow!("{e}"))?,
        )
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    ctx.execute_with_session(Some(AuthSession::Password), |ctx| ctx.create_primary(Hierarchy::Owner, template, None, None, None, None))
        .map(|created| created.key_handle)
        .map_err(|e| anyhow!("{e}"))
}

/// Steps 1–2: a policy session satisfying the EK's policy, then ActivateCredential → W. The session is flushed.
fn activate_credential(
    ctx: &mut Context,
    srk: ObjectHandle,
    ek: ObjectHandle,
    credential: IdObject,
    secret: EncryptedSecret,
) -> Result<Vec<u8>> {
    let session = ctx
        .execute_without_session(|ctx| {
            ctx.start_auth_session(None, None, None, SessionType::Policy, SymmetricDefinition::AES_128_CFB, HashingAlgorithm::Sha256)
        })
        .map_err(|e| anyhow!("starting the EK policy session: {e}"))?
        .ok_or_else(|| anyhow!("the TPM returned no policy session"))?;
    let result = (|| {
        let policy = PolicySession::try_from(session).map_err(|e| anyhow!("{e}"))?;
        ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.policy_secret(policy, AuthHandle::Endorsement, Default::default(), Default::default(), Default::default(), None)
        })
        .map_err(|e| anyhow!("PolicySecret(endorsement): {e}"))?;
        ctx.execute_with_sessions((Some(AuthSession::Password), Some(session), None), |ctx| {
            ctx.activate_credential(srk.into(), ek.into(), credential, secret)
        })
        .map(|w| w.value().to_vec())
        .map_err(|e| anyhow!("ActivateCredential (is the blob made for this TPM's EK and SRK?): {e}"))
    })();
    flush(ctx, SessionHandle::from(session).into());
    result
}

/// Steps 3–4: Import under the SRK, Load, replace 0x81000100. The loaded transient key is flushed.
fn import_and_persist(
    ctx: &mut Context,
    srk: ObjectHandle,
    w: Data,
    public: Public,
    duplicate: Private,
    seed: EncryptedSecret,
) -> Result<()> {
    let private = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.import(srk, Some(w), public.clone(), duplicate, seed, SymmetricDefinitionObject::AES_128_CFB)
        })
        .map_err(|e| anyhow!("Import of the HMAC key under the SRK: {e}"))?;
    let loaded = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| ctx.load(srk.into(), private, public))
        .map_err(|e| anyhow!("Load of the HMAC key: {e}"))?;
    let result = (|| {
        if is_persistent(ctx, IDENTITY_KEY_HANDLE)? {
            let old = persistent(ctx, IDENTITY_KEY_HANDLE)?;
            let removed = ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.evict_control(Provision::Owner, old, persistent_handle(IDENTITY_KEY_HANDLE)?)
                })
                .map_err(|e| anyhow!("removing the previous identity key: {e}"));
            // ESYS keeps its record of the evicted object (with the old Name); left open, the next
            // Esys_TR_FromTPMPublic on 0x81000100 fails with "Name mismatch" (0x70001).
            close(ctx, old);
            removed?;
        }
        let new = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, loaded.into(), persistent_handle(IDENTITY_KEY_HANDLE)?)
            })
            .map_err(|e| anyhow!("persisting the identity key at {IDENTITY_KEY_HANDLE:#010x}: {e}"))?;
        close(ctx, new);
        Ok(())
    })();
    flush(ctx, loaded.into());
    result
}

fn persistent_handle(handle: u32) -> tss_esapi::Result<Persistent> {
    PersistentTpmHandle::new(handle).map(Persistent::Persistent)
}

/// An ESYS handle for the persistent object at `handle` (close it with [`close`]).
fn persistent(ctx: &mut Context, handle: u32) -> Result<ObjectHandle> {
    let tpm_handle = PersistentTpmHandle::new(handle).map_err(|e| anyhow!("{handle:#010x}: {e}"))?;
    ctx.execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle)))
        .map_err(|e| anyhow!("no persistent object at {handle:#010x}: {e}"))
}

/// Whether a persistent object exists at `handle` (TPM2_GetCapability(handles)).
fn is_persistent(ctx: &mut Context, handle: u32) -> Result<bool> {
    let (data, _) = ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))
        .map_err(|e| anyhow!("listing persistent handles: {e}"))?;
    Ok(match data {
        CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == handle),
        _ => false,
    })
}

/// Flushes a transient object or session from the TPM (nothing to do for it if that fails: log-free by design,
/// the caller's own error is the one that matters).
fn flush(ctx: &mut Context, handle: ObjectHandle) {
    let _ = ctx.execute_without_session(|ctx| ctx.flush_context(handle));
}

/// Releases ESYS's record of a persistent object (no TPM command).
fn close(ctx: &mut Context, mut handle: ObjectHandle) {
    let _ = ctx.tr_close(&mut handle);
}
