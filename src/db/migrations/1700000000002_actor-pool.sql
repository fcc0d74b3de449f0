-- Up Migration

-- An actor runs only on runners of its pool (DESIGN §6). Existing actors are in the default pool,
-- which is the pool of every runner that does not name one.
ALTER TABLE actors ADD COLUMN pool text NOT NULL DEFAULT 'default';

-- Down Migration
ALTER TABLE actors DROP COLUMN pool;
