-- What each step produced (a birth-registration extract number, a residence
-- registration number, a health-insurance card number): the officer's note when an
-- internal step is done, the agency's result (HandoffCompleted) when a step outside
-- motcua is. Returned together when the dossier's result is ready (ResultReady.results).
ALTER TABLE @schema@.case_steps ADD COLUMN result text NOT NULL DEFAULT '';
