-- Up Migration

-- Written but never read: the registry's state says whether an actor runs (connectable), the
-- workflow keeps its own alarm (alarm_ts) and nobody asked when an actor fell asleep (sleep_ts).
ALTER TABLE actors DROP COLUMN connectable, DROP COLUMN sleep_ts, DROP COLUMN alarm_ts;
-- The runner's name is logged when it connects; its connection time is last_ping_at's business.
ALTER TABLE runners DROP COLUMN name, DROP COLUMN connected_at;

-- No query filters runners by pool: allocation matches actor names, and the table is small.
DROP INDEX runners_allocatable_idx;

-- The reaper's orphan repair: actors whose workflow never took its first step.
CREATE INDEX actors_orphan_idx ON actors (created_at) WHERE generation = 0 AND destroyed_at IS NULL;
-- `GET /actors` without a name lists live actors by creation.
CREATE INDEX actors_live_created_idx ON actors (created_at, actor_id) WHERE destroyed_at IS NULL;
-- The reaper's trim deletes commands by age.
CREATE INDEX runner_commands_created_idx ON runner_commands (created_at);

-- Down Migration
DROP INDEX runner_commands_created_idx;
DROP INDEX actors_live_created_idx;
DROP INDEX actors_orphan_idx;
CREATE INDEX runners_allocatable_idx ON runners (pool) WHERE lost_at IS NULL AND drained_at IS NULL;
ALTER TABLE runners ADD COLUMN name text NOT NULL DEFAULT '', ADD COLUMN connected_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE actors ADD COLUMN connectable boolean NOT NULL DEFAULT false, ADD COLUMN sleep_ts timestamptz,
  ADD COLUMN alarm_ts timestamptz;
