-- The public view of each workflow step of a dossier (liên thông chains show every
-- agency's step): kept from DossierStatusChanged.steps (routing's word: state, result)
-- and HandoffProgress (the other agency's latest answer on a handed-off step).
CREATE TABLE @schema@.dossier_steps (
    code          text NOT NULL REFERENCES @schema@.dossiers (code),
    idx           int NOT NULL,
    name          text NOT NULL,
    agency_code   text NOT NULL,
    state         text NOT NULL DEFAULT 'waiting'
        CHECK (state IN ('waiting', 'in_progress', 'handed_off', 'done', 'failed', 'stopped')),
    result        text NOT NULL DEFAULT '',
    -- the handoff's own state as interconnect last reported it (sent, accepted, ...)
    handoff_state text,
    handoff_at    timestamptz,
    PRIMARY KEY (code, idx)
);
