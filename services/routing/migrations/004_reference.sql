-- The reference a dossier arrived with (DossierSubmitted.reference), carried by every
-- DossierStatusChanged of its case: {"system", "id", "handoff_id"?} or NULL.
ALTER TABLE @schema@.cases ADD COLUMN reference jsonb;
