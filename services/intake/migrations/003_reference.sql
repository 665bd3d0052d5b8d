-- Where a dossier came from when it was not submitted here: the national portal's
-- dossier code, or the origin province and its code (docs/portal.md). One dossier
-- per reference: a second submission with the same one is a conflict.
ALTER TABLE @schema@.dossiers ADD COLUMN reference jsonb;
CREATE UNIQUE INDEX dossiers_reference ON @schema@.dossiers ((reference->>'system'), (reference->>'id'))
    WHERE reference IS NOT NULL;
