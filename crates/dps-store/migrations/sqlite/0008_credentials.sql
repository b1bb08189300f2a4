-- Certificate issuance from a CSR (issue #16 item 8): credential policies (an uploaded CA's key sealed, AAD
-- `credential-policy/<name_key>`), and the log of every certificate issued, written before the device is told.
CREATE TABLE credential_policies (
    name_key   TEXT PRIMARY KEY NOT NULL,
    doc        TEXT NOT NULL,
    key_sealed TEXT
);
CREATE TABLE issued_certificates (
    serial           TEXT PRIMARY KEY NOT NULL,
    registration_key TEXT NOT NULL,
    issued           TEXT NOT NULL,
    doc              TEXT NOT NULL
);
CREATE INDEX issued_certificates_by_time ON issued_certificates (issued);
CREATE INDEX issued_certificates_by_device ON issued_certificates (registration_key, issued);
