//! TPM attestation over AMQP: TLS, then the client side of the `TPM` SASL mechanism written here (§3.3; fe2o3's
//! client only knows PLAIN, ANONYMOUS and EXTERNAL), then fe2o3's AMQP connection on the same stream without a
//! SASL layer, the two links and register/poll ([`AmqpSession`], §3.4).
//!
//! The exchange, frame by frame (each SASL frame ≤ 512 bytes, AMQP's minimum frame size):
//! 1. `AMQP 3 1 0 0` both ways, then the server's `sasl-mechanisms` (must offer `TPM`);
//! 2. `sasl-init` `TPM`, initial response `0x00 ‖ idScope ‖ 0x00 ‖ registrationId ‖ 0x00 ‖ EK`;
//! 3. challenge `0x00` → response `0x00 ‖ SRK`;
//! 4. challenges `0x80 ‖ part 1` (→ response `0x00`) … `0xC1 ‖ last part`: the blob K1, by control bytes
//!    (bit 7 segment, bit 6 last, bits 0–1 sequence number);
//! 5. K1 activated in the TPM → response `0x00 ‖ SAS token` (`skn=registration`) → `sasl-outcome` `ok`.
//!
//! A `sasl-outcome` in place of a challenge is the service's refusal (`auth`: no enrollment for this EK, or a
//! bad token; `sys-temp`: try later).

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, BytesMut};
use dps_proto::amqp::{TPM_LAST_SEGMENT, TPM_SEGMENT};
use dps_proto::RegistrationOperationStatus;
use fe2o3_amqp::frames::sasl::{Frame, FrameCodec};
use fe2o3_amqp::types::primitives::{Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslResponse};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use std::sync::Arc;

use dps_proto::simulation::FlowKind;

use crate::amqp::AmqpSession;
use crate::carrier::Carrier;
use crate::flow::Flow;
use crate::tpm_worker::TpmWorker;
use crate::ws::Carried;
use crate::{Endpoint, Polling};

/// The SASL protocol header (protocol id 3, version 1.0.0).
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// AMQP's minimum frame size: no SASL frame may be larger (they precede the frame-size negotiation).
pub const MAX_SASL_FRAME: usize = 512;
/// The most blob bytes accepted over all challenge segments (four segments of a full frame).
const MAX_BLOB: usize = 4 * MAX_SASL_FRAME;
/// The `skn` of the SAS token sent in the SASL exchange (§4.1: `registration` over AMQP).
const KEY_NAME: &str = "registration";

/// Registers the device whose TPM `tpm` holds over AMQP (its port or a WebSocket, as `carrier` says), as
/// `registration_id` or else the id derived from its EK (§4.4.2): TLS, the `TPM` SASL exchange, links, register
/// with the registration JSON, poll to the end; on `assigned`, activates the IoT hub key (the second blob).
/// Tells `flow` each step. Returns the final operation status; a refusal is an error.
pub async fn provision(
    endpoint: &Endpoint,
    carrier: Carrier,
    tpm: &TpmWorker,
    registration_id: Option<&str>,
    polling: Polling,
    flow: Flow,
) -> Result<RegistrationOperationStatus> {
    let id = registration_id.unwrap_or(tpm.registration_id()).to_owned();
    let connected = async {
        let tls = Arc::new(crate::tls_config(&endpoint.ca_pem)?);
        let (host, mut stream) = crate::carrier::open(endpoint, carrier, Carried::Amqp, tls, &flow).await?;
        sasl_tpm(&mut stream, tpm, (&endpoint.id_scope, &id), &flow).await?;
        flow.send(FlowKind::Login, "AMQP open, begin, attach (no second SASL layer)", None).await;
        let mut session = AmqpSession::open(stream, &host, &endpoint.id_scope, &id, None).await?;
        flow.received(FlowKind::Login, format!("links attached on {}/registrations/{id}", endpoint.id_scope), None);
        session.observe(flow.clone());
        Ok(session)
    }
    .await;
    let mut session = connected.inspect_err(|e| flow.failed(e))?;
    let body = serde_json::to_vec(&tpm.registration(&id))?;
    let result = session.provision_with_body(&id, body, polling).await;
    let _ = session.close().await;
    let status = result?;
    crate::tpm_https::activate_assigned(tpm, &status, &flow).await?;
    Ok(status)
}

/// The client side of the `TPM` SASL mechanism on `stream` (right after TLS), up to and including an `ok`
/// outcome; the stream is then positioned for the plain AMQP header.
pub async fn sasl_tpm<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    tpm: &TpmWorker,
    (id_scope, registration_id): (&str, &str),
    flow: &Flow,
) -> Result<()> {
    stream.write_all(&SASL_HEADER).await.context("writing the SASL header")?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.context("reading the server's protocol header")?;
    if header != SASL_HEADER {
        bail!("the server answered the SASL header with {:?}, not AMQP 3 1 0 0", header.escape_ascii().to_string());
    }
    let Frame::Mechanisms(offered) = read_frame(stream).await? else {
        bail!("the server's first SASL frame is not sasl-mechanisms");
    };
    if !offered.sasl_server_mechanisms.iter().any(|m| m.as_str() == "TPM") {
        let names: Vec<&str> = offered.sasl_server_mechanisms.iter().map(|m| m.as_str()).collect();
        bail!("the server does not offer the TPM SASL mechanism (offers {})", names.join(", "));
    }

    let shown = format!(
        "mechanism: TPM\ninitial response: 0x00 ‖ {id_scope} ‖ 0x00 ‖ {registration_id} ‖ 0x00 ‖ EK ({} bytes)",
        tpm.endorsement_key().len()
    );
    flow.send(FlowKind::Login, "SASL init TPM: the endorsement key", Some(shown)).await;
    let init = [&[0u8][..], id_scope.as_bytes(), &[0], registration_id.as_bytes(), &[0], tpm.endorsement_key()].concat();
    let frame = SaslInit { mechanism: Symbol::from("TPM"), initial_response: Some(Binary::from(init)), hostname: None };
    write_frame(stream, Frame::Init(frame)).await?;

    let first = challenge(stream).await?;
    if first != [0] {
        bail!("the first TPM challenge is {} bytes, not the single byte 0x00 (§3.3)", first.len());
    }
    flow.received(FlowKind::Challenge, "SASL challenge 0x00: send the storage root key", None);
    flow.send(
        FlowKind::Challenge,
        "SASL response: the storage root key",
        Some(format!("0x00 ‖ SRK ({} bytes)", tpm.storage_root_key().len())),
    )
    .await;
    respond(stream, [&[0u8][..], tpm.storage_root_key()].concat()).await?;

    let blob = read_blob(stream).await?;
    flow.received(FlowKind::Challenge, format!("SASL challenges: the authenticationKey, {} bytes encrypted to the EK", blob.len()), None);
    flow.local(FlowKind::Challenge, "TPM: ActivateCredential and import the key; the SAS token signed inside the TPM").await;
    tpm.activate(blob).await.context("activating the authenticationKey of the SASL challenges")?;
    let sas = tpm.sas_token(id_scope, registration_id, KEY_NAME).await?;
    flow.send(FlowKind::Login, "SASL response: the SAS token the TPM signed", Some(format!("0x00 ‖ {sas}"))).await;
    respond(stream, [&[0u8][..], sas.as_bytes()].concat()).await?;

    match read_frame(stream).await? {
        Frame::Outcome(o) if matches!(o.code, SaslCode::Ok) => {
            flow.received(FlowKind::Login, "SASL outcome ok", None);
            Ok(())
        }
        Frame::Outcome(o) => Err(refused(&o.code, "the SAS token")),
        other => bail!("expected the sasl-outcome, got {}", frame_name(&other)),
    }
}

/// The blob's segments (§3.3 step 4): every control byte has bit 7 set and the next sequence number in bits
/// 0–1; each segment but the last is acknowledged with `0x00`.
async fn read_blob<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<Vec<u8>> {
    let mut blob = Vec::new();
    for sequence in 0u8..4 {
        let segment = challenge(stream).await?;
        let Some((&control, data)) = segment.split_first() else {
            bail!("an empty TPM challenge where a blob segment was expected");
        };
        if control & TPM_SEGMENT == 0 {
            bail!("TPM challenge control byte {control:#04x} does not mark a blob segment (§3.3)");
        }
        if control & 0x03 != sequence {
            bail!("TPM blob segment {sequence} carries sequence number {} (control byte {control:#04x})", control & 0x03);
        }
        if blob.len() + data.len() > MAX_BLOB {
            bail!("the TPM blob exceeds {MAX_BLOB} bytes");
        }
        blob.extend_from_slice(data);
        if control & TPM_LAST_SEGMENT != 0 {
            return Ok(blob);
        }
        respond(stream, vec![0]).await?;
    }
    bail!("the TPM blob did not end within four segments")
}

/// The next `sasl-challenge`'s bytes; an outcome instead is the service's refusal.
async fn challenge<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>> {
    match read_frame(stream).await? {
        Frame::Challenge(c) => Ok(c.challenge.into_vec()),
        Frame::Outcome(o) => Err(refused(&o.code, "the TPM attestation")),
        other => bail!("expected a sasl-challenge, got {}", frame_name(&other)),
    }
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, bytes: Vec<u8>) -> Result<()> {
    write_frame(stream, Frame::Response(SaslResponse { response: Binary::from(bytes) })).await
}

fn refused(code: &SaslCode, what: &str) -> anyhow::Error {
    let name = match code {
        SaslCode::Ok => "ok (0)",
        SaslCode::Auth => "auth (1)",
        SaslCode::Sys => "sys (2)",
        SaslCode::SysPerm => "sys-perm (3)",
        SaslCode::SysTemp => "sys-temp (4)",
    };
    anyhow!("the service refused {what}: SASL outcome {name}")
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Mechanisms(_) => "sasl-mechanisms",
        Frame::Init(_) => "sasl-init",
        Frame::Challenge(_) => "sasl-challenge",
        Frame::Response(_) => "sasl-response",
        Frame::Outcome(_) => "sasl-outcome",
    }
}

/// Reads one SASL frame: a 4-byte big-endian size (8–512, itself included), data offset 2, type 1.
pub async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Frame> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.context("reading a SASL frame")?;
    let size = usize::try_from(u32::from_be_bytes(size))?;
    if !(8..=MAX_SASL_FRAME).contains(&size) {
        bail!("a SASL frame of {size} bytes (8–{MAX_SASL_FRAME} allowed)");
    }
    let mut buf = BytesMut::zeroed(size - 4);
    stream.read_exact(&mut buf).await.context("reading a SASL frame")?;
    if buf.first() != Some(&2) || buf.get(1) != Some(&1) {
        bail!("not a SASL frame (data offset 2, type 1)");
    }
    FrameCodec {}.decode(&mut buf).map_err(|e| anyhow!("a malformed SASL frame: {e}"))?.ok_or_else(|| anyhow!("an empty SASL frame"))
}

/// Writes one SASL frame with its size prefix; refuses frames over 512 bytes.
pub async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, frame: Frame) -> Result<()> {
    let mut body = BytesMut::new();
    FrameCodec {}.encode(frame, &mut body).map_err(|e| anyhow!("cannot encode a SASL frame: {e}"))?;
    let size = body.len() + 4;
    if size > MAX_SASL_FRAME {
        bail!("a SASL frame of {size} bytes exceeds {MAX_SASL_FRAME} (is the registration id too long?)");
    }
    let mut out = BytesMut::with_capacity(size);
    out.put_u32(u32::try_from(size)?);
    out.extend_from_slice(&body);
    stream.write_all(&out).await.context("writing a SASL frame")?;
    stream.flush().await.context("writing a SASL frame")
}
