-- Notifications requested for applicants; delivery channels work through them.
CREATE TABLE @schema@.notifications (
    id         bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE, -- the NotificationRequested envelope: one event, one row
    code       text NOT NULL,
    event      text NOT NULL,
    email      text NOT NULL DEFAULT '',
    phone      text NOT NULL DEFAULT '',
    params     jsonb NOT NULL DEFAULT '{}',
    state      text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'delivered', 'failed')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_code ON @schema@.notifications (code, id);
