-- The bus tables of one service schema: transactional outbox, idempotent inbox and
-- dead letters (see common/bus.c for how they are used).
CREATE TABLE @schema@.outbox (
    seq          bigserial PRIMARY KEY,
    id           uuid NOT NULL,
    destination  text NOT NULL,
    dossier_code text NOT NULL DEFAULT '',
    type         text NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    delivered_at timestamptz,
    last_error   text,
    UNIQUE (id, destination)
);
-- Pending envelopes in delivery order per (destination, dossier).
CREATE INDEX outbox_pending ON @schema@.outbox (destination, dossier_code, seq)
    WHERE delivered_at IS NULL;

-- Wake the relay when envelopes are written (once per statement, at commit).
CREATE FUNCTION @schema@.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('@schema@_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON @schema@.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@.outbox_notify();

-- Message ids already handled: a repeat is acknowledged and skipped.
CREATE TABLE @schema@.inbox (
    message_id   uuid PRIMARY KEY,
    source       text NOT NULL,
    type         text NOT NULL,
    dossier_code text NOT NULL DEFAULT '',
    handled_at   timestamptz NOT NULL DEFAULT now()
);

-- Envelopes that could not be decoded or handled, with the reason.
CREATE TABLE @schema@.dead_letters (
    id           bigserial PRIMARY KEY,
    message_id   text,
    source       text,
    type         text,
    dossier_code text,
    payload      bytea NOT NULL,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz
);
CREATE UNIQUE INDEX dead_letters_message ON @schema@.dead_letters (message_id)
    WHERE message_id IS NOT NULL AND replayed_at IS NULL;
