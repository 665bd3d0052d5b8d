-- Delivery: each notification goes through its channels in the applicant's order of
-- preference; every message handed to a provider is an attempt row written (state
-- 'sending') before the provider is called. See docs/notifications.md.
ALTER TABLE @schema@.notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE @schema@.notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'unknown'));
ALTER TABLE @schema@.notifications
    ADD COLUMN channels text[] NOT NULL DEFAULT '{}', -- order of preference
    ADD COLUMN chan_idx int NOT NULL DEFAULT 1,       -- 1-based: the channel being tried
    ADD COLUMN tries int NOT NULL DEFAULT 0,          -- attempts on that channel so far
    ADD COLUMN attempts int NOT NULL DEFAULT 0,       -- attempts on every channel
    ADD COLUMN channel text,                          -- channel of the latest attempt
    ADD COLUMN next_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_until timestamptz,               -- while 'sending'
    ADD COLUMN last_error text,
    ADD COLUMN template_version int,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
-- Rows kept before delivery existed get the default order from what is known.
UPDATE @schema@.notifications SET channels = array_remove(ARRAY[
    CASE WHEN email <> '' THEN 'email' END,
    CASE WHEN phone <> '' THEN 'sms' END,
    CASE WHEN phone <> '' THEN 'chat' END], NULL);
UPDATE @schema@.notifications SET state = 'failed', last_error = 'no e-mail address or phone number'
 WHERE state = 'pending' AND cardinality(channels) = 0;
CREATE INDEX notifications_due ON @schema@.notifications (next_at, id) WHERE state = 'pending';
CREATE INDEX notifications_sending ON @schema@.notifications (lease_until) WHERE state = 'sending';

CREATE TABLE @schema@.attempts (
    id              bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES @schema@.notifications (id),
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'chat')),
    recipient       text NOT NULL,
    state           text NOT NULL DEFAULT 'sending'
        CHECK (state IN ('sending', 'sent', 'delivered', 'failed', 'unknown')),
    provider_id     text,          -- Message-ID, SMS id, chat message id
    code            int,           -- HTTP status or SMTP reply code
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- At most one message per notification and channel: only attempts that surely sent
-- nothing ('failed': refused, 4xx, 5xx) may be followed by another on that channel.
CREATE UNIQUE INDEX attempts_once ON @schema@.attempts (notification_id, channel)
    WHERE state <> 'failed';
CREATE INDEX attempts_notification ON @schema@.attempts (notification_id, id);
CREATE INDEX attempts_provider ON @schema@.attempts (channel, provider_id)
    WHERE provider_id IS NOT NULL;
