-- The lifecycle: the workflow snapshot of each case, its steps with their own due
-- times, clock pauses, apology letters, officers' agencies, imported history.
ALTER TABLE @schema@.cases
    ADD COLUMN procedure_name text NOT NULL DEFAULT '',
    ADD COLUMN level          int NOT NULL DEFAULT 3 CHECK (level IN (2, 3, 4)),
    ADD COLUMN days           numeric NOT NULL DEFAULT 0,
    ADD COLUMN fee            bigint NOT NULL DEFAULT 0,
    ADD COLUMN cutoff         text,
    ADD COLUMN return_method  text NOT NULL DEFAULT 'counter',
    ADD COLUMN step_index     int NOT NULL DEFAULT 0,
    -- when the case left the open states, and how: approved, refused, withdrawn, rejected
    ADD COLUMN resolved_at    timestamptz,
    ADD COLUMN outcome        text CHECK (outcome IN ('approved', 'refused', 'withdrawn', 'rejected')),
    -- the clock is stopped since paused_at (supplement requested, fee owed)
    ADD COLUMN paused_at      timestamptz,
    -- first moment the case was seen past its due time while open
    ADD COLUMN overdue_at     timestamptz,
    ADD COLUMN imported       boolean NOT NULL DEFAULT false,
    -- who to tell and what they gave (for notifications and handoffs)
    ADD COLUMN applicant      jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN documents      jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN catalog_version text NOT NULL DEFAULT '',
    -- the agency that resolves the procedure (statistics count dossiers there)
    ADD COLUMN resolving_agency text NOT NULL DEFAULT '';
CREATE INDEX cases_resolving ON @schema@.cases (resolving_agency);
CREATE INDEX cases_open_due ON @schema@.cases (due_at) WHERE resolved_at IS NULL;
CREATE INDEX cases_received ON @schema@.cases (received_at);
CREATE INDEX cases_resolved ON @schema@.cases (resolved_at) WHERE resolved_at IS NOT NULL;

-- The workflow of a case as it was when the dossier was submitted.
CREATE TABLE @schema@.case_steps (
    code        text NOT NULL REFERENCES @schema@.cases (code),
    idx         int NOT NULL,
    name        text NOT NULL,
    agency_code text NOT NULL,
    days        numeric NOT NULL,
    external    boolean NOT NULL DEFAULT false,
    started_at  timestamptz,
    due_at      timestamptz,
    done_at     timestamptz,
    PRIMARY KEY (code, idx)
);
CREATE INDEX case_steps_agency ON @schema@.case_steps (agency_code) WHERE done_at IS NULL;

-- Each stop of the clock, logged.
CREATE TABLE @schema@.pauses (
    id         bigserial PRIMARY KEY,
    code       text NOT NULL REFERENCES @schema@.cases (code),
    kind       text NOT NULL CHECK (kind IN ('supplement', 'payment')),
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    note       text NOT NULL DEFAULT ''
);

-- Apology letters with a new appointment (phiếu xin lỗi và hẹn lại ngày trả kết quả).
CREATE TABLE @schema@.apologies (
    id             bigserial PRIMARY KEY,
    code           text NOT NULL REFERENCES @schema@.cases (code),
    agency_code    text NOT NULL,
    reason         text NOT NULL,
    due_at         timestamptz NOT NULL,
    appointment_at timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The agency tree (from the catalog data files), for officers' scopes and statistics.
CREATE TABLE @schema@.agencies (
    code     text PRIMARY KEY,
    name     text NOT NULL,
    kind     text NOT NULL,
    parent   text,
    external boolean NOT NULL DEFAULT false,
    version  text NOT NULL,
    retired_at timestamptz
);
