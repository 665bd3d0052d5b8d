-- Handoffs of workflow steps to agencies outside motcua (liên thông).
CREATE TABLE @schema@.handoffs (
    id             bigserial PRIMARY KEY,
    code           text NOT NULL,
    procedure_code text NOT NULL,
    step_index     int NOT NULL,
    step_name      text NOT NULL,
    agency_code    text NOT NULL,
    due_at         timestamptz,
    request        bytea NOT NULL,  -- the HandoffRequested as received
    state          text NOT NULL DEFAULT 'requested'
        CHECK (state IN ('requested', 'sent', 'accepted', 'completed', 'rejected', 'failed', 'expired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, step_index)
);
CREATE INDEX handoffs_state ON @schema@.handoffs (state, due_at);
