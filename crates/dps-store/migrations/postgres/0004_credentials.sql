-- Certificate issuance from a CSR (issue #16 item 8): credential policies (an uploaded CA's key sealed, AAD
-- `credential-policy/<name_key>`), and the log of every certificate issued, written before the device is told.
CREATE TABLE credential_policies (
    name_key   TEXT COLLATE "C" PRIMARY KEY,
    doc        TEXT NOT NULL,
    key_sealed TEXT
);
CREATE TABLE issued_certificates (
    serial           TEXT COLLATE "C" PRIMARY KEY,
    registration_key TEXT COLLATE "C" NOT NULL,
    issued           TEXT COLLATE "C" NOT NULL,
    doc              TEXT NOT NULL
);
CREATE INDEX issued_certificates_by_time ON issued_certificates (issued);
CREATE INDEX issued_certificates_by_device ON issued_certificates (registration_key, issued);
