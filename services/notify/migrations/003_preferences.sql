-- Preferences per applicant, the dead-letter list and retries by an operator.
--
-- An applicant's preferences are keyed by a contact: a phone number in E.164 form
-- ('+84912345678') or a lower-cased e-mail address. `channels` is the order to use
-- (a subset of email, sms, chat); `opt_out` the channels never to use, whatever a
-- request asks. See docs/notifications.md.
CREATE TABLE @schema@.preferences (
    contact    text PRIMARY KEY,
    channels   text[] NOT NULL CHECK (channels <@ ARRAY['email', 'sms', 'chat']),
    opt_out    text[] NOT NULL DEFAULT '{}' CHECK (opt_out <@ ARRAY['email', 'sms', 'chat']),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A retry (POST /v1/notifications/{id}/retry) starts another round of the channels.
-- Attempts are unique per (notification, channel) within a round only, so that an
-- 'unknown' attempt does not block the operator's decision to send again.
ALTER TABLE @schema@.notifications ADD COLUMN round int NOT NULL DEFAULT 1;
ALTER TABLE @schema@.attempts ADD COLUMN round int NOT NULL DEFAULT 1;
DROP INDEX @schema@.attempts_once;
CREATE UNIQUE INDEX attempts_once ON @schema@.attempts (notification_id, channel, round)
    WHERE state <> 'failed';

CREATE TABLE @schema@.retries (
    id              bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES @schema@.notifications (id),
    round           int NOT NULL,  -- the round this retry started
    from_state      text NOT NULL, -- 'failed' or 'unknown'
    last_error      text,          -- why it had stopped
    by_key          text NOT NULL, -- the operator key's name
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retries_notification ON @schema@.retries (notification_id, id);

-- The dead-letter list, newest first.
CREATE INDEX notifications_state ON @schema@.notifications (state, updated_at DESC, id DESC);
