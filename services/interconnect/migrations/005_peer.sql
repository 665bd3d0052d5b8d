-- Handoffs to another province's motcua over the bus link: which province, and what
-- became of the dossier there (its code and state, from its PeerStatus answers).
ALTER TABLE @schema@.handoffs
    ADD COLUMN peer         text,  -- the province's code; NULL for an agency system
    ADD COLUMN remote_code  text,  -- the dossier's code in that province
    ADD COLUMN remote_state text;  -- its last state there
