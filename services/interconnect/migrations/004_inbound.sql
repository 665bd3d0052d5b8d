-- Dossiers from outside (the national portal, a peer province) to open at intake
-- (inbound.c), and the national portal's status sync (portal.c). docs/portal.md.
CREATE TABLE @schema@.inbound (
    id          bigserial PRIMARY KEY,
    system      text NOT NULL,          -- "national_portal" or "province:<code>"
    ref_id      text NOT NULL,          -- the dossier's code in that system
    handoff_id  text,                   -- a peer province's handoff id
    submission  jsonb NOT NULL,         -- POST /v1/dossiers body, without the reference
    state       text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'submitted', 'refused')),
    local_code  text,                   -- the dossier code intake gave it
    tries       int NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (system, ref_id)
);
CREATE INDEX inbound_to_send ON @schema@.inbound (next_at) WHERE state = 'pending';
CREATE INDEX inbound_local_code ON @schema@.inbound (local_code);

-- One row per status change to report to the national portal, in order per dossier
-- (seq); only the oldest pending row of a code is ever sent.
CREATE TABLE @schema@.portal_sync (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL,          -- our dossier code (the national code if none)
    seq         int NOT NULL,           -- 1, 2, ... per code
    status      int NOT NULL CHECK (status BETWEEN 1 AND 10),
    ref_system  text,
    ref_id      text,
    cause       text NOT NULL DEFAULT 'change' CHECK (cause IN ('change', 'reconcile', 'refused')),
    payload     jsonb NOT NULL,         -- the push body, but sync_id
    state       text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'acked', 'refused')),
    tries       int NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    acked_at    timestamptz,
    UNIQUE (code, seq)
);
CREATE INDEX portal_sync_pending ON @schema@.portal_sync (code, seq) WHERE state = 'pending';
CREATE INDEX portal_sync_to_send ON @schema@.portal_sync (next_at) WHERE state = 'pending';
CREATE INDEX portal_sync_created ON @schema@.portal_sync (created_at);

-- Reconciliation runs: one scheduled run per local day across replicas.
CREATE TABLE @schema@.portal_reconcile (
    id          bigserial PRIMARY KEY,
    day         date,                   -- the scheduled run's local day; NULL: on demand
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    checked     int NOT NULL DEFAULT 0,
    resent      int NOT NULL DEFAULT 0,
    error       text,
    UNIQUE (day)
);
