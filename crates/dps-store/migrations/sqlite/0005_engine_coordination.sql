-- Coordination state of the registration engine lives in the store (durable-engine issue):
-- one operation `assigning` per registration id at most (409203 is this constraint), and a lease (owner,
-- expiry) on each assigning operation so a sweeper resumes work whose owner stopped.
ALTER TABLE operations ADD COLUMN reg_key TEXT NOT NULL DEFAULT '';
ALTER TABLE operations ADD COLUMN lease_owner TEXT;
ALTER TABLE operations ADD COLUMN lease_until TEXT;
UPDATE operations SET reg_key = lower(json_extract(doc, '$.registrationId'));
-- Earlier versions serialised registrations in memory; should a data directory hold two assigning operations of
-- one device, the newest stays.
DELETE FROM operations WHERE status = 'assigning'
  AND rowid NOT IN (SELECT MAX(rowid) FROM operations WHERE status = 'assigning' GROUP BY reg_key);
CREATE UNIQUE INDEX operations_one_assigning ON operations (reg_key) WHERE status = 'assigning';
CREATE INDEX operations_by_lease ON operations (lease_until) WHERE status = 'assigning';

-- Rows that could not be decoded or unsealed, moved aside so the rest serves (see quarantine.rs).
CREATE TABLE quarantine (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl       TEXT NOT NULL,
    row_key   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    doc       TEXT,
    secrets   TEXT,
    at        TEXT NOT NULL
);
