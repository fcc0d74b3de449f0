/** What the activities run against; the worker builds it once. */
import type { Client } from '@temporalio/client';
import type { Config } from '../config.js';
import type { Db } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { StateChange } from '../db/actors.js';
import type { InsertAndSendInput } from './start.js';

/**
 * Fault-injection hooks, off unless a test passes them to an in-process worker. They let a
 * test fail an attempt at an exact point and change the world before the retry.
 */
export interface Faults {
  beforeInsertAndSendCommands?: (call: { attempt: number; input: InsertAndSendInput }) => Promise<void>;
  beforeRecordActorState?: (change: StateChange) => Promise<void>;
}

export interface ActivityDeps {
  db: Db;
  client: Client;
  config: Config;
  log: Logger;
  faults?: Faults;
}
