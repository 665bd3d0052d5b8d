-- A step done by another province's motcua names the procedure that province runs
-- (the catalog step's "procedure"); NULL: the dossier's own procedure.
ALTER TABLE @schema@.case_steps ADD COLUMN procedure_code text;
