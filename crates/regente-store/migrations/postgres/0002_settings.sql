-- Settings every server sharing the database must agree on, such as the token
-- signing secret.
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);
