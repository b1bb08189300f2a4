-- CA certificates (Azure's certificate store): public material only, no secrets.
CREATE TABLE ca_certificates (
    name_key TEXT PRIMARY KEY NOT NULL,
    doc      TEXT NOT NULL
);
