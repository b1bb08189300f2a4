-- DPS Console, PostgreSQL schema v1: the SQLite schema (migrations/sqlite/0001…0005) as it stands, in one step.
-- Documents are JSON text in the wire shape (dps-proto); secrets are never in `doc`: they live sealed
-- (AES-256-GCM, dps-crypto) in `secrets` / `*_sealed` columns. `*_key` columns hold case-folded ids (DPS ids
-- are case-insensitive) and compare bytewise (`COLLATE "C"`, as SQLite does): lists and continuations are
-- the same on both backends whatever the database's locale. Times are the wire's RFC 3339 text
-- (`format_time`: fixed width, so text order is time order), as in SQLite.

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE enrollments (
    id_key      TEXT COLLATE "C" PRIMARY KEY,
    attestation TEXT NOT NULL,
    doc         TEXT NOT NULL,
    secrets     TEXT
);

CREATE TABLE enrollment_groups (
    id_key      TEXT COLLATE "C" PRIMARY KEY,
    attestation TEXT NOT NULL,
    doc         TEXT NOT NULL,
    secrets     TEXT
);

CREATE TABLE registrations (
    id_key    TEXT COLLATE "C" PRIMARY KEY,
    group_key TEXT COLLATE "C",
    doc       TEXT NOT NULL
);
CREATE INDEX registrations_by_group ON registrations (group_key, id_key);

-- Operations (§8) and the registration engine's coordination: one operation `assigning` per registration id
-- at most (409203 is this constraint), and a lease (owner, expiry) on each assigning operation.
CREATE TABLE operations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    status      TEXT NOT NULL,
    updated     TEXT COLLATE "C" NOT NULL,
    doc         TEXT NOT NULL,
    reg_key     TEXT COLLATE "C" NOT NULL DEFAULT '',
    lease_owner TEXT,
    lease_until TEXT COLLATE "C"
);
CREATE INDEX operations_by_status ON operations (status, updated);
CREATE UNIQUE INDEX operations_one_assigning ON operations (reg_key) WHERE status = 'assigning';
CREATE INDEX operations_by_lease ON operations (lease_until) WHERE status = 'assigning';

CREATE TABLE linked_hubs (
    host_key TEXT COLLATE "C" PRIMARY KEY,
    doc      TEXT NOT NULL,
    -- Connector credentials (IoT Hub connection strings, broker passwords), sealed.
    secrets  TEXT
);

CREATE TABLE access_policies (
    name_key         TEXT COLLATE "C" PRIMARY KEY,
    name             TEXT NOT NULL,
    rights           TEXT NOT NULL,
    primary_sealed   TEXT NOT NULL,
    secondary_sealed TEXT NOT NULL
);

CREATE TABLE device_identities (
    hub_key     TEXT COLLATE "C" NOT NULL,
    device_key  TEXT COLLATE "C" NOT NULL,
    doc         TEXT NOT NULL,
    keys_sealed TEXT,
    PRIMARY KEY (hub_key, device_key)
);

-- CA certificates (Azure's certificate store): public material only, no secrets.
CREATE TABLE ca_certificates (
    name_key TEXT COLLATE "C" PRIMARY KEY,
    doc      TEXT NOT NULL
);

-- TPM challenges (§4.4.3): K1 sealed, the operation that answered it (single use), its expiry.
CREATE TABLE tpm_challenges (
    registration_key TEXT COLLATE "C" PRIMARY KEY,
    key_sealed       TEXT NOT NULL,
    expires          TEXT COLLATE "C" NOT NULL,
    operation_id     TEXT,
    endorsement_key  BYTEA NOT NULL,
    storage_root_key BYTEA NOT NULL
);

-- Rows that could not be decoded or unsealed, moved aside so the rest serves (see quarantine.rs).
CREATE TABLE quarantine (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl     TEXT NOT NULL,
    row_key TEXT NOT NULL,
    reason  TEXT NOT NULL,
    doc     TEXT,
    secrets TEXT,
    at      TEXT NOT NULL
);

-- ConfigVersion: bumped in the same transaction as every write of enrollments, groups, hubs and CAs (NOTIFY
-- dps_config carries the new value); its row lock is also the configuration writers' turn.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);
