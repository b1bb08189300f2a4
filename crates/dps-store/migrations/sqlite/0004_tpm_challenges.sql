-- TPM challenges (§4.4.3): the HMAC key K1 a device received inside its authentication key, sealed; the
-- operation that answered it (single use); its expiry. Keyed by the lower-case registration id.
CREATE TABLE tpm_challenges (
    registration_key TEXT PRIMARY KEY,
    key_sealed TEXT NOT NULL,
    expires TEXT NOT NULL,
    operation_id TEXT,
    endorsement_key BLOB NOT NULL,
    storage_root_key BLOB NOT NULL
);
