-- Dossiers as intake received them, and the public view of their status.
CREATE TABLE @schema@.dossiers (
    code             text PRIMARY KEY,
    procedure_code   text NOT NULL,
    agency_code      text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('online', 'direct', 'postal')),
    applicant        jsonb NOT NULL,
    documents        jsonb NOT NULL DEFAULT '[]',
    return_method    text NOT NULL CHECK (return_method IN ('counter', 'post', 'online')),
    delivery_address text,
    lookup_token     text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    due_at           timestamptz,
    -- the public view, kept from DossierStatusChanged
    status           text NOT NULL DEFAULT 'SUBMITTED',
    national_status  int NOT NULL DEFAULT 1,
    routed           boolean NOT NULL DEFAULT false,
    status_at        timestamptz NOT NULL DEFAULT now()
);

-- Daily sequence per receiving agency for dossier codes; never reused.
CREATE TABLE @schema@.code_sequences (
    agency_code text NOT NULL,
    day         text NOT NULL,
    last        bigint NOT NULL,
    PRIMARY KEY (agency_code, day)
);

-- History of the dossier as the public sees it.
CREATE TABLE @schema@.dossier_events (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL REFERENCES @schema@.dossiers (code),
    state       text NOT NULL,
    agency_code text NOT NULL DEFAULT '',
    note        text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL
);
CREATE INDEX dossier_events_code ON @schema@.dossier_events (code, id);

-- Idempotency-Key of POST requests: the first answer is replayed to a repeat.
CREATE TABLE @schema@.idempotency (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    status       int,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
