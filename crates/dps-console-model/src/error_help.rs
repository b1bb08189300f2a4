//! Plain-language help for what went wrong: every DPS error code the service sends (`dps-core`'s `ErrorKind`,
//! `<HTTP status> * 1000 + <sub-code>`), plus the failures that never reach the service (network, TLS, a desktop
//! service that did not start) — the likely cause and what to do about it.

/// The cause of a failure and the fix, for people who do not know the error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Help {
    /// A short name of the failure ("Already exists").
    pub title: &'static str,
    /// What most likely happened.
    pub cause: &'static str,
    /// What to do next.
    pub fix: &'static str,
}

const fn help(title: &'static str, cause: &'static str, fix: &'static str) -> Help {
    Help { title, cause, fix }
}

/// Every code `dps-core`'s `ErrorKind::code` can give (kept in step with `crates/dps-core/src/error.rs`).
pub const KNOWN_CODES: [i64; 24] = [
    400001, 400004, 400011, 400012, 400207, 400208, 400209, 401002, 401003, 403001, 403002, 404201, 404202, 404203, 404204, 405001, 409201,
    409203, 412002, 413001, 415001, 429001, 500001, 503001,
];

/// Help for a DPS error with its message: a few 401002 refusals of TPM devices have help of their own.
pub fn for_error(code: i64, message: &str) -> Help {
    match code {
        401002 if message.contains("endorsement key") && message.contains("does not match") => help(
            "TPM endorsement key mismatch",
            "The device presented an endorsement key (EK) other than the one in its individual enrollment: another TPM, or an enrollment made with a mistyped EK.",
            "Read the device's EK (dps tpm show, or Azure's tpm_device_provision) and update the enrollment's endorsement key.",
        ),
        401002 if message.contains("key of its TPM challenge") => help(
            "Bad TPM signature",
            "The device's token is not signed with the key the service sent in its challenge: the TPM did not activate the authentication key (another TPM, or a reset TPM).",
            "Register again from the start so the device gets a new challenge; check that the EK and SRK it sends are its own.",
        ),
        401002 if message.contains("TPM challenge") => help(
            "TPM challenge expired or used",
            "A TPM challenge is answered once and expires after 15 minutes.",
            "Register again: the device sends its EK and SRK without a token and gets a new challenge.",
        ),
        _ => for_code(code),
    }
}

/// Help for a DPS error code; an unknown code gets the help of its HTTP status.
pub fn for_code(code: i64) -> Help {
    match code {
        400001 => help(
            "Malformed request",
            "The service could not read the request body: it is not valid JSON or a member has the wrong type.",
            "Check the values you entered (JSON fields such as the initial twin must be valid JSON) and try again.",
        ),
        400004 => help(
            "Invalid value",
            "A field or an id breaks the service's rules, or the id in the body differs from the one in the path.",
            "Read the message for the field concerned, correct it and send again.",
        ),
        400011 => help(
            "Certificate request refused",
            "The device sent a CSR the service cannot sign: not base64 DER PKCS#10, a signature that does not verify, a common name other than the registration id, a key its credential policy does not allow, or an api-version before 2025-07-01-preview.",
            "Make the CSR with the device's own key and CN = its registration id (openssl req -new -key … -subj /CN=<id> -outform DER), use a key type the policy lists, and send api-version 2025-07-01-preview or later.",
        ),
        400012 => help(
            "No credential policy",
            "The device asked for a certificate, but its enrollment or group names no credential policy, or names one that does not exist.",
            "Create the policy on the Certificates page (or dps credential-policy set) and set the enrollment's credentialPolicyName to it.",
        ),
        400207 => help(
            "Custom allocation failed",
            "The enrollment's custom-allocation webhook failed or answered something the service could not use.",
            "Check the webhook URL and that the function answers with an iotHubHostName; look at the Logs page for details.",
        ),
        400208 => help(
            "Custom allocation named no hub",
            "The custom-allocation webhook answered without an iotHubHostName.",
            "Make the webhook return one of the linked hubs' host names.",
        ),
        400209 => help(
            "Custom allocation refused",
            "The custom-allocation webhook answered 401: it did not accept the service's call.",
            "Check the webhook URL's key (code=…) and its authorisation settings.",
        ),
        401002 => help(
            "Not signed in",
            "The credentials are missing, wrong or expired (a console session ends after a while).",
            "Sign in again. Devices: check the key, the registration id and the SAS token's expiry.",
        ),
        401003 => help(
            "Not allowed",
            "The credentials are valid but their access policy lacks the right this operation needs.",
            "Use a policy with the needed right (Settings lists the policies and their rights).",
        ),
        404201 => help(
            "Registration not found",
            "No device has registered with this registration id (or its record was deleted).",
            "Check the id; a device appears here after its first successful registration.",
        ),
        404202 => help(
            "Enrollment not found",
            "There is no enrollment or enrollment group with this id.",
            "Check the id, or create the enrollment first.",
        ),
        404203 => help(
            "Operation not found",
            "The registration operation is unknown or too old to be kept.",
            "Register the device again to start a new operation.",
        ),
        404204 => help(
            "Not found",
            "The linked hub, certificate or other resource does not exist.",
            "Check the name; the list on this page shows what exists.",
        ),
        405001 => help(
            "Not supported",
            "This resource does not accept this kind of request.",
            "This is likely a console or client bug; report it with the tracking id.",
        ),
        409201 => help(
            "Already exists",
            "An item with this id already exists.",
            "Choose another id, or edit the existing item instead of creating it.",
        ),
        409203 => help(
            "Registration in progress",
            "Another registration of the same device is still running.",
            "Wait a few seconds and try again.",
        ),
        412002 => help(
            "Changed by someone else",
            "The item was modified after you loaded it (its ETag no longer matches).",
            "Reload the item, re-apply your change and save again.",
        ),
        403001 => help(
            "Cross-site request refused",
            "The console port answers only its own pages: the request came from another site (its Origin), or sent a body that is not JSON.",
            "Open the console at its own address; scripts and tools send JSON (Content-Type: application/json) and no foreign Origin.",
        ),
        403002 => help(
            "Quota exceeded",
            "The Azure limits profile allows no more of these (Azure's published quota).",
            "Delete some first, or switch the limits profile to default in Settings.",
        ),
        413001 => help(
            "Too large",
            "The request is larger than the 96 KB the service accepts.",
            "Make the payload or the initial twin smaller, or import in smaller files.",
        ),
        415001 => help(
            "Unsupported content type",
            "The request body is not in a format the service accepts.",
            "Send JSON (Content-Type: application/json) or, for certificates, PEM text.",
        ),
        429001 => {
            help("Throttled", "Too many requests in a short time.", "Wait a moment and try again; the service says when in Retry-After.")
        }
        500001 => help(
            "Internal error",
            "The service failed while handling the request.",
            "Try again; if it persists, look at the Logs page around the tracking id.",
        ),
        503001 => help(
            "Temporarily unavailable",
            "A dependency of the service (its store or a linked hub) is not reachable right now.",
            "Try again in a few seconds; check the hub's status on the Hubs page.",
        ),
        other => for_status(u16::try_from(other / 1000).unwrap_or(0)),
    }
}

/// Help for an HTTP status without a DPS error body.
pub fn for_status(status: u16) -> Help {
    match status {
        400 => help("Bad request", "The service refused the request's content.", "Check the values you entered and try again."),
        401 => unauthorized(),
        403 => help("Forbidden", "The service refused access to this resource.", "Sign in with an account that has access."),
        404 => help(
            "Not found",
            "The resource does not exist, or this server is not a DPS Console service (a plain file server answers 404).",
            "Check the name, and that the console was opened from the service's console port.",
        ),
        409 => for_code(409201),
        412 => for_code(412002),
        429 => for_code(429001),
        500..=599 => help(
            "Service error",
            "The service (or a proxy in front of it) failed to answer.",
            "Try again; if it persists, look at the service's log.",
        ),
        _ => {
            help("Unexpected answer", "The service answered in a way the console did not expect.", "Try again; if it persists, report it.")
        }
    }
}

/// The request never reached the service.
pub fn network() -> Help {
    help(
        "Service not reachable",
        "The console could not connect: the service is stopped, or it listens elsewhere.",
        "Start the service (dps serve) and reload this page from its console address.",
    )
}

/// The TLS handshake failed (an untrusted or expired certificate).
pub fn tls() -> Help {
    help(
        "Certificate not trusted",
        "The TLS connection failed: the service's certificate is not trusted or has expired.",
        "Install the service's CA certificate (Overview → Download CA) or renew the certificate.",
    )
}

/// The console session is missing or expired.
pub fn unauthorized() -> Help {
    for_code(401002)
}

/// The desktop shell's embedded service did not start.
pub fn unavailable() -> Help {
    help(
        "Service not running",
        "The desktop application's built-in service failed to start (a port in use, an unreadable data folder…).",
        "Read the message, remove the cause, then start DPS Console again.",
    )
}

/// Help for a transport failure's text: TLS problems are told apart from other network failures.
pub fn for_network_message(message: &str) -> Help {
    let m = message.to_ascii_lowercase();
    if ["certificate", "tls", "ssl", "handshake"].iter().any(|w| m.contains(w)) {
        tls()
    } else {
        network()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_has_its_own_help() {
        for code in KNOWN_CODES {
            let h = for_code(code);
            let by_status = for_status(u16::try_from(code / 1000).unwrap_or(0));
            assert!(!h.cause.is_empty() && !h.fix.is_empty(), "{code}");
            // 401002, 409201, 412002 and 429001 are also what their bare status means.
            if ![401002, 409201, 412002, 429001].contains(&code) {
                assert_ne!(h, by_status, "{code} falls back to its status");
            }
        }
    }

    /// The list above is the service's list: a code added to `dps-core` without help fails here.
    #[test]
    fn the_known_codes_are_the_services_codes() {
        let mut service: Vec<i64> = dps_core::ErrorKind::ALL.iter().map(|k| k.code()).collect();
        service.sort_unstable();
        let mut ours = KNOWN_CODES.to_vec();
        ours.sort_unstable();
        assert_eq!(ours, service);
    }

    #[test]
    fn unknown_codes_fall_back_to_their_status() {
        assert_eq!(for_code(409999), for_code(409201));
        assert_eq!(for_code(503777).title, "Service error");
        assert_eq!(for_code(0).title, "Unexpected answer");
        assert_eq!(for_status(401), unauthorized());
    }

    #[test]
    fn tls_failures_are_told_apart() {
        assert_eq!(for_network_message("TLS handshake failed: UnknownIssuer"), tls());
        assert_eq!(for_network_message("TypeError: Failed to fetch"), network());
    }

    #[test]
    fn tpm_refusals_get_their_own_help() {
        let mismatch = for_error(401002, "the endorsement key presented by 'x' does not match its enrollment's");
        assert_eq!(mismatch.title, "TPM endorsement key mismatch");
        let signature = for_error(401002, "the SAS token of 'x' is not signed with the key of its TPM challenge (…)");
        assert_eq!(signature.title, "Bad TPM signature");
        assert_eq!(for_error(401002, "the TPM challenge of 'x' expired; register again").title, "TPM challenge expired or used");
        assert_eq!(for_error(401002, "wrong key"), for_code(401002));
        assert_eq!(for_error(404201, "endorsement key does not match"), for_code(404201));
    }
}
