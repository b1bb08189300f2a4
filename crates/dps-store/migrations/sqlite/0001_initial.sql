-- DPS Console, SQLite schema v1. Documents are JSON in the wire shape (dps-proto); secrets are never in
-- `doc`: they live sealed (AES-256-GCM, dps-crypto) in `secrets` / `*_sealed` columns.
-- `*_key` columns hold case-folded ids (DPS ids are case-insensitive).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE enrollments (
    id_key      TEXT PRIMARY KEY NOT NULL,
    attestation TEXT NOT NULL,
    doc         TEXT NOT NULL,
    secrets     TEXT
);

CREATE TABLE enrollment_groups (
    id_key      TEXT PRIMARY KEY NOT NULL,
    attestation TEXT NOT NULL,
    doc         TEXT NOT NULL,
    secrets     TEXT
);

CREATE TABLE registrations (
    id_key    TEXT PRIMARY KEY NOT NULL,
    group_key TEXT,
    doc       TEXT NOT NULL
);
CREATE INDEX registrations_by_group ON registrations (group_key, id_key);

CREATE TABLE operations (
    id      TEXT PRIMARY KEY NOT NULL,
    status  TEXT NOT NULL,
    updated TEXT NOT NULL,
    doc     TEXT NOT NULL
);
CREATE INDEX operations_by_status ON operations (status, updated);

CREATE TABLE linked_hubs (
    host_key TEXT PRIMARY KEY NOT NULL,
    doc      TEXT NOT NULL
);

CREATE TABLE access_policies (
    name_key         TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    rights           TEXT NOT NULL,
    primary_sealed   TEXT NOT NULL,
    secondary_sealed TEXT NOT NULL
);

CREATE TABLE device_identities (
    hub_key     TEXT NOT NULL,
    device_key  TEXT NOT NULL,
    doc         TEXT NOT NULL,
    keys_sealed TEXT,
    PRIMARY KEY (hub_key, device_key)
);
