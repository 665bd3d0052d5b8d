-- A dossier another province handed us is one per handoff: the same origin dossier may
-- be handed again (a new handoff id) after this province refused it once.
DROP INDEX @schema@.dossiers_reference;
CREATE UNIQUE INDEX dossiers_reference ON @schema@.dossiers
    ((reference->>'system'), (reference->>'id'), (coalesce(reference->>'handoff_id', '')))
    WHERE reference IS NOT NULL;
