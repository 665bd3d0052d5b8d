-- The catalog as intake serves it (loaded from the data files, see common/catalog.c).
CREATE EXTENSION IF NOT EXISTS unaccent;

CREATE TABLE @schema@.agencies (
    code       text PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL,
    parent     text,
    external   boolean NOT NULL DEFAULT false,
    version    text NOT NULL,
    retired_at timestamptz
);

CREATE TABLE @schema@.procedures (
    code           text PRIMARY KEY,
    name           text NOT NULL,
    field          text NOT NULL DEFAULT '',
    agency_code    text NOT NULL,
    level          int NOT NULL CHECK (level IN (2, 3, 4)),
    days           numeric NOT NULL,
    cutoff         text,
    fee            bigint NOT NULL,
    documents      jsonb NOT NULL,
    return_methods text[] NOT NULL,
    steps          jsonb NOT NULL,
    search         text NOT NULL,
    version        text NOT NULL,
    retired_at     timestamptz
);
CREATE INDEX procedures_agency ON @schema@.procedures (agency_code);

-- What the dossier was submitted under, for the receipt and the statistics.
ALTER TABLE @schema@.dossiers
    ADD COLUMN procedure_name text NOT NULL DEFAULT '',
    ADD COLUMN level          int,
    ADD COLUMN fee            bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue        boolean NOT NULL DEFAULT false,
    ADD COLUMN appointment_at timestamptz;
