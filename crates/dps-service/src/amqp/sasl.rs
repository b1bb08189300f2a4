//! The SASL layer (§3.1, §3.3), after the client's `AMQP 3 1 0 0` header: the server offers `TPM` and
//! `PLAIN`, then runs the mechanism the client picks.
//!
//! - **PLAIN** (symmetric keys): authcid `{idScope}/registrations/{registrationId}`, password = the SAS token.
//!   The outcome is `ok` whenever the fields are well formed; the token is checked on each request, like
//!   MQTT's password, so a wrong key reaches the device as a rejected request carrying the DPS error body
//!   (401002) instead of a bare SASL failure.
//! - **TPM**: init `0x00 ‖ idScope ‖ 0x00 ‖ registrationId ‖ 0x00 ‖ EK` → challenge `0x00` → response
//!   `0x00 ‖ SRK` → the engine builds the authentication-key blob (the TPM attestation port,
//!   `RegistrationEngine::tpm_challenge`) → challenges `0x80 ‖ part 1`, `0xC1 ‖ part 2` → response
//!   `0x00 ‖ SAS token` → outcome. The token (signed with the key inside the blob) is checked on each
//!   request, like PLAIN's.
//!
//! Every SASL frame is at most 512 bytes (they precede the frame-size negotiation); the caller bounds the
//! whole exchange by the handshake deadline. Why this is not fe2o3's `SaslAcceptor`: see `amqp/mod.rs`.

use bytes::{BufMut, BytesMut};
use dps_core::DpsError;
use dps_proto::amqp::{parse_plain, parse_tpm_init, tpm_blob_challenges, tpm_response_data, RegistrationAddress, SASL_MECHANISMS};
use fe2o3_amqp::frames::sasl::{Frame, FrameCodec};
use fe2o3_amqp::types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslChallenge, SaslCode, SaslMechanisms, SaslOutcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use super::connection::End;
use crate::app::App;

/// AMQP's minimum frame size, the limit of every SASL frame.
pub const MAX_SASL_FRAME: usize = 512;

/// What the SASL layer established.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No SASL layer: the plain AMQP header came first (X.509 devices; the TLS client certificate attests).
    None,
    /// PLAIN: the device's SAS token for the identity it names.
    Plain { identity: RegistrationAddress, sas: String },
    /// TPM: the SAS token signed with the key of the challenge, for the identity of the init frame.
    Tpm { identity: RegistrationAddress, sas: String },
}

impl Credentials {
    /// The device the SASL identity names, if any.
    pub fn identity(&self) -> Option<&RegistrationAddress> {
        match self {
            Credentials::None => None,
            Credentials::Plain { identity, .. } | Credentials::Tpm { identity, .. } => Some(identity),
        }
    }
}

/// Runs the exchange after the client's SASL header was read.
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, app: &App) -> Result<Credentials, End> {
    stream.write_all(&super::header::SASL).await.map_err(End::Io)?;
    let offered = SASL_MECHANISMS.iter().map(|m| Symbol::from(*m)).collect::<Vec<_>>();
    write_frame(stream, Frame::Mechanisms(SaslMechanisms { sasl_server_mechanisms: Array::from(offered) })).await?;
    let Frame::Init(init) = read_frame(stream).await? else {
        return Err(End::Protocol("the first SASL frame must be sasl-init".into()));
    };
    let response = init.initial_response.map(Binary::into_vec).unwrap_or_default();
    match init.mechanism.as_str() {
        "PLAIN" => plain(stream, &response).await,
        "TPM" => tpm(stream, app, &response).await,
        other => {
            outcome(stream, SaslCode::Auth).await?;
            Err(End::Refused(format!("SASL mechanism '{}' is not offered (TPM, PLAIN)", other.escape_debug())))
        }
    }
}

async fn plain<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) -> Result<Credentials, End> {
    let Some(c) = parse_plain(response) else {
        outcome(stream, SaslCode::Auth).await?;
        return Err(End::Refused("SASL PLAIN credentials are not {idScope}/registrations/{registrationId} and a SAS token".into()));
    };
    outcome(stream, SaslCode::Ok).await?;
    Ok(Credentials::Plain { identity: c.identity, sas: c.password })
}

async fn tpm<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, app: &App, init: &[u8]) -> Result<Credentials, End> {
    let Some(init) = parse_tpm_init(init) else {
        outcome(stream, SaslCode::Auth).await?;
        return Err(End::Refused("the TPM sasl-init is not 0x00 idScope 0x00 registrationId 0x00 EK".into()));
    };
    challenge(stream, vec![0]).await?;
    let srk = response(stream).await?;
    let blob = match app.engine.tpm_challenge(&init.identity.id_scope, &init.identity.registration_id, &init.endorsement_key, &srk).await {
        Ok(blob) => blob,
        Err(e) => return refuse(stream, &e).await,
    };
    let Some([first, second]) = tpm_blob_challenges(&blob) else {
        outcome(stream, SaslCode::Sys).await?;
        return Err(End::Refused(format!("the TPM authentication key ({} bytes) does not fit two SASL challenges", blob.len())));
    };
    challenge(stream, first).await?;
    response(stream).await?;
    challenge(stream, second).await?;
    let sas = String::from_utf8(response(stream).await?).map_err(|_| End::Protocol("the TPM SAS token is not UTF-8".into()))?;
    outcome(stream, SaslCode::Ok).await?;
    Ok(Credentials::Tpm { identity: init.identity, sas })
}

/// Refuses with `auth` (a device error) or `sys-temp` (the service's, §3.3 frame 8).
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, e: &DpsError) -> Result<Credentials, End> {
    let code = if e.status() >= 500 { SaslCode::SysTemp } else { SaslCode::Auth };
    outcome(stream, code).await?;
    Err(End::Refused(format!("TPM attestation refused ({}): {}", e.code(), e.message)))
}

async fn challenge<S: AsyncWrite + Unpin>(stream: &mut S, bytes: Vec<u8>) -> Result<(), End> {
    write_frame(stream, Frame::Challenge(SaslChallenge { challenge: Binary::from(bytes) })).await
}

/// The data of the next TPM `sasl-response`, without its control byte.
async fn response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, End> {
    match read_frame(stream).await? {
        Frame::Response(r) => Ok(tpm_response_data(&r.response.into_vec()).map(<[u8]>::to_vec).unwrap_or_default()),
        _ => Err(End::Protocol("expected a sasl-response".into())),
    }
}

async fn outcome<S: AsyncWrite + Unpin>(stream: &mut S, code: SaslCode) -> Result<(), End> {
    write_frame(stream, Frame::Outcome(SaslOutcome { code, additional_data: None })).await
}

/// Reads one SASL frame: 8 ≤ size ≤ 512, data offset 2, type 1 (SASL).
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Frame, End> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.map_err(End::Io)?;
    let size = u32::from_be_bytes(size) as usize;
    if !(8..=MAX_SASL_FRAME).contains(&size) {
        return Err(End::Protocol(format!("a SASL frame of {size} bytes (8–{MAX_SASL_FRAME} allowed)")));
    }
    let mut buf = BytesMut::zeroed(size - 4);
    stream.read_exact(&mut buf).await.map_err(End::Io)?;
    if buf.first() != Some(&2) || buf.get(1) != Some(&1) {
        return Err(End::Protocol("not a SASL frame (data offset 2, type 1)".into()));
    }
    let mut codec = FrameCodec {};
    match codec.decode(&mut buf) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(End::Protocol("an empty SASL frame".into())),
        Err(e) => Err(End::Protocol(format!("a malformed SASL frame: {e}"))),
    }
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, frame: Frame) -> Result<(), End> {
    let mut body = BytesMut::new();
    let mut codec = FrameCodec {};
    codec.encode(frame, &mut body).map_err(|e| End::Protocol(format!("cannot encode a SASL frame: {e}")))?;
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_u32(u32::try_from(body.len() + 4).map_err(|_| End::Protocol("SASL frame too large".into()))?);
    out.extend_from_slice(&body);
    stream.write_all(&out).await.map_err(End::Io)?;
    stream.flush().await.map_err(End::Io)
}
