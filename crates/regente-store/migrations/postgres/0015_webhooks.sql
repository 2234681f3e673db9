-- Webhooks: endpoints an organisation's admins register to be told of events,
-- the deliveries queued for them from the event stream, and every attempt.
-- Secrets are sealed by the server's vault (`v1.KEY.NONCE.CIPHERTEXT`, bound to
-- the organisation and the webhook): never in clear here.
CREATE TABLE webhooks (
    id                      TEXT PRIMARY KEY,
    organization_id         TEXT NOT NULL REFERENCES organizations(id),
    url                     TEXT NOT NULL,
    -- JSON array of event type names.
    events                  TEXT NOT NULL,
    description             TEXT,
    enabled                 BOOLEAN NOT NULL,
    -- Why the server disabled it (a 410 Gone), if it did.
    disabled_reason         TEXT,
    secret                  TEXT NOT NULL,
    -- After a rotation, the former secret still signs until `previous_secret_until`.
    previous_secret         TEXT,
    previous_secret_until   BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX webhooks_by_organization ON webhooks (organization_id, created_at);

CREATE TABLE webhook_deliveries (
    -- Also the `webhook-id` header: the same on every retry and replay.
    id                  TEXT PRIMARY KEY,
    organization_id     TEXT NOT NULL,
    webhook_id          TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type          TEXT NOT NULL,
    -- The stream event it comes from (`events.seq`; not a foreign key: events are pruned).
    event_seq           BIGINT NOT NULL,
    -- The JSON body, fixed when queued, so that every attempt signs the same bytes.
    payload             TEXT NOT NULL,
    status              TEXT NOT NULL,
    attempts            BIGINT NOT NULL,
    -- Attempts since it was queued or last replayed: where it stands in the retry schedule.
    round_attempts      BIGINT NOT NULL,
    -- When it is due (pending), or null (ended). A claim moves it past the send's time bound.
    next_attempt_at     BIGINT,
    last_status_code    BIGINT,
    last_error          TEXT,
    last_duration_ms    BIGINT,
    last_attempt_at     BIGINT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at, id);

CREATE TABLE webhook_attempts (
    delivery_id     TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt         BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    status_code     BIGINT,
    error           TEXT,
    -- The answer's first KiB.
    response        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
