-- Indexes for the retention purge and for "handled in the last hour" (motcuactl status).
CREATE INDEX inbox_handled ON @schema@.inbox (handled_at);
CREATE INDEX outbox_delivered ON @schema@.outbox (delivered_at) WHERE delivered_at IS NOT NULL;
