-- The credentials vault. Values are sealed by the server (XChaCha20-Poly1305
-- under the master key, which is never stored here): each row holds the key's id,
-- the nonce and the ciphertext, never a value.
CREATE TABLE credentials (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    description      TEXT,
    -- JSON array of the robot ids allowed; NULL: every robot of the organisation.
    robots           TEXT,
    -- Moves on every replacement of the values; bound into their ciphertexts.
    version          BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_by       TEXT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE credential_values (
    credential_id    TEXT NOT NULL REFERENCES credentials(id),
    organization_id  TEXT NOT NULL,
    version          BIGINT NOT NULL,
    field            TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    nonce            BYTEA NOT NULL,
    ciphertext       BYTEA NOT NULL,
    PRIMARY KEY (credential_id, field)
);

-- What a key rotation looks for: values under another key than the new one.
CREATE INDEX credential_values_by_key ON credential_values (key_id);

-- One row per master key the vault's values may be sealed under: a known text
-- sealed under that key, so that a wrong key is told at start.
CREATE TABLE vault_keys (
    key_id       TEXT PRIMARY KEY,
    check_value  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
