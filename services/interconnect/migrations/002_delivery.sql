-- Sending handoffs to the agency systems (HTTP/JSON adapter), their answers, expiry.
ALTER TABLE @schema@.handoffs
    ADD COLUMN tries       int NOT NULL DEFAULT 0,          -- calls made to the system
    ADD COLUMN next_at     timestamptz NOT NULL DEFAULT now(), -- next call, while 'requested'
    ADD COLUMN lease_until timestamptz,                     -- claimed by a worker until
    ADD COLUMN last_error  text,                            -- why the last call failed
    ADD COLUMN result      text,                            -- what the agency produced
    ADD COLUMN reason      text;                            -- why it was rejected or failed
CREATE INDEX handoffs_to_send ON @schema@.handoffs (next_at) WHERE state = 'requested';
