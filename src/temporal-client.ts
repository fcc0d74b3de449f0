/**
 * The client side of the actor workflows, shared by the gateway (create, signal), the reaper
 * activity (repair, runner lost) and the tests: how an actor workflow is started and reached.
 */
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type SignalDefinition,
} from '@temporalio/client';
import type { Config } from './config.js';
import type { Actor } from './db/actors.js';
import { actorWorkflowId, type ActorTiming, type ActorWorkflowInput } from './workflows/actor-api.js';
import { ActorGenerationKey, ActorKeyKey, ActorNameKey, ActorStateKey } from './workflows/search-attributes.js';

export async function connectClient(config: Config): Promise<Client> {
  const connection = await Connection.connect({ address: config.temporal.address });
  return new Client({ connection, namespace: config.temporal.namespace });
}

export function actorTiming(config: Config): ActorTiming {
  const t = config.timing;
  return {
    startThresholdMs: t.startThresholdMs,
    stopThresholdMs: t.stopThresholdMs,
    backoffBaseMs: t.backoffBaseMs,
    backoffMaxExponent: t.backoffMaxExponent,
    backoffResetMs: t.backoffResetMs,
  };
}

/**
 * Starts the workflow of a registered actor. Idempotent: if it is already running (or ran and
 * finished), nothing happens, so a create retried after a crash is safe.
 */
export async function startActorWorkflow(client: Client, config: Config, actor: Actor): Promise<void> {
  const input: ActorWorkflowInput = {
    actorId: actor.actorId,
    name: actor.name,
    key: actor.key,
    input: actor.input,
    crashPolicy: actor.crashPolicy,
    timing: actorTiming(config),
  };
  try {
    await client.workflow.start('actorWorkflow', {
      workflowId: actorWorkflowId(actor.actorId),
      taskQueue: config.temporal.taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: [
        { key: ActorNameKey, value: actor.name },
        ...(actor.key === null ? [] : [{ key: ActorKeyKey, value: actor.key }]),
        { key: ActorStateKey, value: 'allocating' },
        { key: ActorGenerationKey, value: 0 },
      ],
      staticSummary: `actor **${actor.name}**${actor.key === null ? '' : ` key \`${actor.key}\``}`,
      staticDetails: `actor id \`${actor.actorId}\`, crash policy \`${actor.crashPolicy}\``,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return;
    throw err;
  }
}

/** Signals an actor workflow; false if it no longer runs (the actor was destroyed). */
export async function signalActor<Args extends unknown[]>(
  client: Client,
  actorId: string,
  signal: SignalDefinition<Args>,
  ...args: Args
): Promise<boolean> {
  try {
    await client.workflow.getHandle(actorWorkflowId(actorId)).signal(signal, ...args);
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}
