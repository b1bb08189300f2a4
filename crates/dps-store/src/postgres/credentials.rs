//! Credential policies and the issuance log on PostgreSQL: the implementation of `crate::credentials` with
//! this backend's placeholders (policy writes in the configuration writers' turn, `write_config`).

use sqlx::PgConnection;

use super::PgStore;
use crate::credentials::{credential_store, Sql};

const POSTGRES: Sql = Sql {
    current: "SELECT doc FROM credential_policies WHERE name_key = $1",
    list: "SELECT doc FROM credential_policies ORDER BY name_key",
    get: "SELECT doc, key_sealed FROM credential_policies WHERE name_key = $1",
    upsert: "INSERT INTO credential_policies (name_key, doc, key_sealed) VALUES ($1, $2, $3)
             ON CONFLICT (name_key) DO UPDATE SET doc = excluded.doc, key_sealed = excluded.key_sealed",
    delete: "DELETE FROM credential_policies WHERE name_key = $1",
    log: "INSERT INTO issued_certificates (serial, registration_key, issued, doc) VALUES ($1, $2, $3, $4)",
    issued_of: "SELECT doc FROM issued_certificates WHERE registration_key = $1 ORDER BY issued DESC, serial LIMIT $2",
    issued_all: "SELECT doc FROM issued_certificates ORDER BY issued DESC, serial LIMIT $1",
};

credential_store!(PgStore, PgConnection, POSTGRES);
