-- Where a result returned by post goes.
ALTER TABLE @schema@.cases ADD COLUMN delivery_address text NOT NULL DEFAULT '';
