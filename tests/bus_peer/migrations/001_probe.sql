-- Every BusProbe handled, in handling order; in_order says whether it followed the
-- previous seq of its stream directly.
CREATE TABLE @schema@.probe_log (
    pos        bigserial PRIMARY KEY,
    stream     text NOT NULL,
    seq        bigint NOT NULL,
    message_id uuid NOT NULL,
    in_order   boolean NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX probe_log_stream ON @schema@.probe_log (stream, seq);
