-- Organisation API keys: a key stands for a role in its organisation, for
-- integrations that should not hold a user's password. Only the key's SHA-256
-- is kept (the key is 32 random bytes, so a fast hash is enough: there is
-- nothing to guess from), with its first characters for people to tell keys apart.
CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    role             TEXT NOT NULL,
    -- The first characters after `rgk_`: not a secret, shown in lists.
    prefix           TEXT NOT NULL,
    key_hash         TEXT NOT NULL UNIQUE,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    -- Moved at most about once a minute, not at every request.
    last_used_at     BIGINT,
    expires_at       BIGINT,
    revoked_at       BIGINT
);

-- A name is taken only by a key that is not revoked.
CREATE UNIQUE INDEX api_keys_live_names ON api_keys (organization_id, name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_by_organization ON api_keys (organization_id, created_at);
