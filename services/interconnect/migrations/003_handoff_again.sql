-- A step refused or expired may be handed off again (the officers of the step before
-- decide so): that is a new handoff with a new id (the receiving system's idempotency
-- key), so at most one handoff per step is alive, not one ever.
ALTER TABLE @schema@.handoffs DROP CONSTRAINT handoffs_code_step_index_key;
CREATE UNIQUE INDEX handoffs_alive ON @schema@.handoffs (code, step_index)
    WHERE state NOT IN ('rejected', 'failed', 'expired');
