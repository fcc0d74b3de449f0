-- Up Migration

-- Resumable client sessions (H10): the gateway holding each one, and the hash of its token. A
-- client reconnecting to any gateway with the token takes the session over there; a session
-- whose socket was lost (`detached_at`) may be resumed within the retention, then it ends.
CREATE TABLE client_sessions (
  request_id uuid PRIMARY KEY,
  actor_id uuid NOT NULL,
  gateway_id text NOT NULL,
  token_hash bytea NOT NULL,
  detached_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- The sweep looks for sessions of gateways that stopped heartbeating, and detached ones.
CREATE INDEX client_sessions_gateway_idx ON client_sessions (gateway_id);

-- Down Migration
DROP TABLE client_sessions;
