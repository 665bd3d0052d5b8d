-- Refunds paid back through the gateway's refund API, and the daily reconciliation.
--
-- A refund is `requested` when decided (in the inbox transaction of the status change);
-- the refund worker claims it (lease_until, FOR UPDATE SKIP LOCKED), calls the gateway
-- and records `completed` (with RefundCompleted) or `failed` (the gateway's code).
-- Temporary failures keep it `requested` with next_at pushed back (backoff).
UPDATE @schema@.refunds SET state = 'completed' WHERE state = 'recorded';
ALTER TABLE @schema@.refunds
    ALTER COLUMN state SET DEFAULT 'requested',
    ADD CONSTRAINT refunds_state CHECK (state IN ('requested', 'completed', 'failed')),
    ADD COLUMN tries            int NOT NULL DEFAULT 0,
    ADD COLUMN next_at          timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_until      timestamptz,
    ADD COLUMN last_error       text,
    ADD COLUMN response_code    text,         -- vnp_ResponseCode of the deciding answer
    ADD COLUMN bank_transaction text,         -- the refund's vnp_TransactionNo
    ADD COLUMN completed_at     timestamptz,
    ADD COLUMN trace_id         text,
    ADD COLUMN message_id       text;         -- the DossierStatusChanged that decided it
CREATE INDEX refunds_due ON @schema@.refunds (next_at) WHERE state = 'requested';

-- One row per reconciliation: the day compared (Asia/Ho_Chi_Minh), how it was started,
-- what the gateway listed and how many mismatches were found.
CREATE TABLE @schema@.reconciliation_runs (
    id            bigserial PRIMARY KEY,
    day           date NOT NULL,
    trigger       text NOT NULL CHECK (trigger IN ('scheduled', 'operator')),
    gateway_count int NOT NULL,
    mismatches    int NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_runs_day ON @schema@.reconciliation_runs (day, id);

CREATE TABLE @schema@.reconciliation_mismatches (
    id                 bigserial PRIMARY KEY,
    run_id             bigint NOT NULL REFERENCES @schema@.reconciliation_runs (id),
    order_id           text NOT NULL,     -- vnp_TxnRef
    kind               text NOT NULL,     -- docs/payment.md, "Reconciliation"
    gateway_amount_vnd bigint,
    our_amount_vnd     bigint,
    detail             text NOT NULL
);
CREATE INDEX reconciliation_mismatches_run ON @schema@.reconciliation_mismatches (run_id, id);
