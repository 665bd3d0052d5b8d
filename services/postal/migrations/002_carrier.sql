-- The carrier integration: shipment creation with retries, tracking webhooks and
-- the postal intake handover.
ALTER TABLE @schema@.shipments
    ADD COLUMN procedure_name text NOT NULL DEFAULT '',
    ADD COLUMN fee_vnd        bigint,
    ADD COLUMN attempt        int NOT NULL DEFAULT 0,     -- the carrier's delivery attempt
    ADD COLUMN final          boolean NOT NULL DEFAULT false, -- no more changes expected
    ADD COLUMN tries          int NOT NULL DEFAULT 0,     -- creation calls made
    ADD COLUMN next_at        timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_until    timestamptz,
    ADD COLUMN last_error     text;
ALTER TABLE @schema@.shipments DROP CONSTRAINT shipments_state_check;
ALTER TABLE @schema@.shipments ADD CONSTRAINT shipments_state_check
    CHECK (state IN ('requested', 'created', 'picked_up', 'in_transit', 'delivered',
                     'failed_attempt', 'returned_to_sender', 'rejected'));
CREATE UNIQUE INDEX shipments_tracking ON @schema@.shipments (tracking_number)
    WHERE tracking_number IS NOT NULL;
CREATE INDEX shipments_due ON @schema@.shipments (next_at) WHERE state = 'requested';

-- Every tracking webhook that passed the signature check, and what it did.
CREATE TABLE @schema@.tracking_events (
    id              bigserial PRIMARY KEY,
    tracking_number text NOT NULL,
    code            text,            -- NULL when the tracking number is unknown
    status          text NOT NULL,
    attempt         int NOT NULL DEFAULT 0,
    final           boolean NOT NULL DEFAULT false,
    reason          text NOT NULL DEFAULT '',
    at              text NOT NULL DEFAULT '',
    verdict         text NOT NULL,   -- applied | ignored | unknown
    body            text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracking_events_number ON @schema@.tracking_events (tracking_number);

-- Dossiers the carrier handed over (postal intake), one row per carrier reference:
-- a repeated batch is answered from here.
CREATE TABLE @schema@.intake_items (
    carrier_reference text PRIMARY KEY,
    batch             text NOT NULL,
    code              text,          -- the dossier code intake gave, when accepted
    status            int NOT NULL,  -- intake's HTTP status
    error             jsonb,         -- intake's error, when refused
    created_at        timestamptz NOT NULL DEFAULT now()
);
