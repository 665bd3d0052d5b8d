-- The case of every dossier: its state and the history of its transitions.
CREATE TABLE @schema@.cases (
    code           text PRIMARY KEY,
    procedure_code text NOT NULL,
    agency_code    text NOT NULL,
    channel        text NOT NULL,
    state          text NOT NULL,
    received_at    timestamptz NOT NULL,
    due_at         timestamptz,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_agency_state ON @schema@.cases (agency_code, state);

CREATE TABLE @schema@.case_events (
    id         bigserial PRIMARY KEY,
    code       text NOT NULL REFERENCES @schema@.cases (code),
    from_state text,
    to_state   text NOT NULL,
    actor      text NOT NULL,
    note       text NOT NULL DEFAULT '',
    message_id uuid,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_events_code ON @schema@.case_events (code, id);
