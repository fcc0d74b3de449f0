-- Up Migration

-- Each (re)connection of a runner bumps its epoch, and the gateway holding that connection
-- carries it: a disconnect or a ping of an older connection (a late close on the same gateway, a
-- socket left open after the runner was declared lost) then changes nothing.
ALTER TABLE runners ADD COLUMN connection_epoch bigint NOT NULL DEFAULT 0;

-- Down Migration
ALTER TABLE runners DROP COLUMN connection_epoch;
