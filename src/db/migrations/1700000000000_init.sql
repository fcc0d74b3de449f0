-- Up Migration

-- Gateways announce themselves and heartbeat once per T/2. A gateway's hibernating requests are
-- live exactly while its last_ping_at is within the hibernation threshold T.
CREATE TABLE gateways (
  gateway_id   text PRIMARY KEY,
  address      text NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  last_ping_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runners (
  runner_id        uuid PRIMARY KEY,
  name             text NOT NULL,
  pool             text NOT NULL,
  actor_names      text[] NOT NULL,
  gateway_id       text,
  capacity         int NOT NULL CHECK (capacity > 0),
  allocated        int NOT NULL DEFAULT 0 CHECK (allocated >= 0),
  protocol_version int NOT NULL,
  connected_at     timestamptz NOT NULL DEFAULT now(),
  last_ping_at     timestamptz NOT NULL DEFAULT now(),
  drained_at       timestamptz,
  lost_at          timestamptz
);
CREATE INDEX runners_allocatable_idx ON runners (pool) WHERE lost_at IS NULL AND drained_at IS NULL;

CREATE TABLE actors (
  actor_id     uuid PRIMARY KEY,
  name         text NOT NULL,
  key          text,
  input        jsonb,
  crash_policy text NOT NULL DEFAULT 'restart' CHECK (crash_policy IN ('restart', 'sleep', 'destroy')),
  state        text NOT NULL DEFAULT 'allocating'
               CHECK (state IN ('allocating', 'starting', 'running', 'stopping', 'sleeping', 'backoff', 'destroyed')),
  generation   int NOT NULL DEFAULT 0,
  runner_id    uuid,
  connectable  boolean NOT NULL DEFAULT false,
  crash_count  int NOT NULL DEFAULT 0,
  last_error   jsonb,
  sleep_ts     timestamptz,
  alarm_ts     timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  destroyed_at timestamptz
);
-- (name, key) is unique among actors that are not destroyed; destroying frees the key.
CREATE UNIQUE INDEX actors_name_key_live_idx ON actors (name, key) WHERE destroyed_at IS NULL AND key IS NOT NULL;
CREATE INDEX actors_runner_idx ON actors (runner_id) WHERE runner_id IS NOT NULL;
CREATE INDEX actors_name_idx ON actors (name, created_at);

-- The runners' command queues. A row is acknowledged (acked_at) when its runner confirms it and
-- trimmed by the reaper after a retention period, so a retried insert cannot re-queue it.
CREATE TABLE runner_commands (
  actor_id   uuid NOT NULL,
  generation int NOT NULL,
  idx        int NOT NULL,
  runner_id  uuid NOT NULL,
  payload    jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  acked_at   timestamptz,
  PRIMARY KEY (actor_id, generation, idx)
);
CREATE INDEX runner_commands_pending_idx ON runner_commands (runner_id, created_at) WHERE acked_at IS NULL;

CREATE TABLE hibernating_requests (
  gateway_id text NOT NULL,
  request_id uuid NOT NULL,
  actor_id   uuid NOT NULL,
  opened_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (gateway_id, request_id)
);
CREATE INDEX hibernating_requests_actor_idx ON hibernating_requests (actor_id);

CREATE TABLE actor_kv (
  actor_id uuid NOT NULL,
  key      text NOT NULL,
  value    bytea NOT NULL,
  PRIMARY KEY (actor_id, key)
);

-- Down Migration
DROP TABLE actor_kv;
DROP TABLE hibernating_requests;
DROP TABLE runner_commands;
DROP TABLE actors;
DROP TABLE runners;
DROP TABLE gateways;
