/**
 * `dormouse actors create|get|list|destroy|sleep|wake`: the management API of DESIGN §6 from a
 * terminal. A table by default; with `--json`, the API's JSON document exactly as it came.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { loadConfig } from '../config.js';
import type { Actor } from '../db/actors.js';
import { CRASH_POLICIES, type CrashPolicy } from '../workflows/actor-api.js';
import { gatewayOption, gatewayTarget, ManagementApi, tokenOption, type GatewayOptions } from './gateway-client.js';
import { formatTable, printJson } from './output.js';

interface ApiOptions extends GatewayOptions {
  json?: boolean;
}

interface CreateOptions extends ApiOptions {
  key?: string;
  input?: unknown;
  pool?: string;
  crashPolicy?: CrashPolicy;
}

interface ListOptions extends ApiOptions {
  name?: string;
  key?: string;
  limit?: number;
}

interface ActorDocument {
  actor: Actor;
}

interface ActorsDocument {
  actors: Actor[];
}

/** The requests that signal an actor's workflow; each answers 202 with the actor as it was. */
const REQUESTS = [
  {
    verb: 'destroy',
    method: 'DELETE',
    suffix: '',
    description: 'destroy an actor: it stops for good and its state is deleted',
  },
  {
    verb: 'sleep',
    method: 'POST',
    suffix: '/sleep',
    description: 'put an actor to sleep (the next request or message wakes it)',
  },
  { verb: 'wake', method: 'POST', suffix: '/wake', description: 'wake a sleeping actor' },
] as const;

export function registerActorCommands(program: Command): void {
  const actors = program
    .command('actors')
    .description("create, inspect, sleep, wake and destroy actors (the gateway's management API)");

  apiCommand(actors, 'create <name>', 'create an actor of a type its runners host')
    .option('--key <key>', 'its key: at most one live actor has a given name and key')
    .option('--input <json>', 'its input, as JSON', parseJsonArgument)
    .option('--pool <pool>', "the runner pool it is placed on (default: the gateway's default pool)")
    .addOption(new Option('--crash-policy <policy>', 'what a crash does (default: restart)').choices(CRASH_POLICIES))
    .action(async (name: string, options: CreateOptions) => {
      const { key, input, pool, crashPolicy } = options;
      const body = { name, key, input, pool, crashPolicy };
      const document = await api(options).request<ActorDocument>('POST', '/actors', body);
      print(options, document, () => actorTable([document.actor]));
    });

  apiCommand(actors, 'get <actorId>', 'show an actor').action(async (actorId: string, options: ApiOptions) => {
    const document = await api(options).request<ActorDocument>('GET', actorPath(actorId));
    print(options, document, () => actorTable([document.actor]));
  });

  apiCommand(actors, 'list', 'list the actors not destroyed, oldest first')
    .option('--name <name>', 'only actors of this name')
    .option('--key <key>', 'only actors with this key')
    .option('--limit <n>', 'at most this many (the gateway defaults to 100)', parseLimit)
    .action(async (options: ListOptions) => {
      const query = new URLSearchParams();
      if (options.name !== undefined) query.set('name', options.name);
      if (options.key !== undefined) query.set('key', options.key);
      if (options.limit !== undefined) query.set('limit', String(options.limit));
      const document = await api(options).request<ActorsDocument>('GET', `/actors?${query.toString()}`);
      print(options, document, () => (document.actors.length === 0 ? 'no actors' : actorTable(document.actors)));
    });

  for (const { verb, method, suffix, description } of REQUESTS) {
    apiCommand(actors, `${verb} <actorId>`, description).action(async (actorId: string, options: ApiOptions) => {
      const document = await api(options).request<ActorDocument>(method, actorPath(actorId, suffix));
      print(
        options,
        document,
        () => `${verb} requested for actor ${document.actor.actorId} (it was ${document.actor.state})`,
      );
    });
  }
}

/** A subcommand that talks to the management API: the gateway, the token and `--json`. */
function apiCommand(parent: Command, spec: string, description: string): Command {
  return parent
    .command(spec)
    .description(description)
    .addOption(gatewayOption())
    .addOption(tokenOption())
    .option('--json', "print the API's JSON document instead of a table");
}

function api(options: GatewayOptions): ManagementApi {
  return new ManagementApi(gatewayTarget(options, loadConfig()));
}

function actorPath(actorId: string, suffix = ''): string {
  return `/actors/${encodeURIComponent(actorId)}${suffix}`;
}

function print(options: ApiOptions, document: unknown, human: () => string): void {
  if (options.json) printJson(document);
  else process.stdout.write(`${human()}\n`);
}

function actorTable(actors: readonly Actor[]): string {
  return formatTable(
    ['ACTOR ID', 'NAME', 'KEY', 'STATE', 'GENERATION', 'RUNNER', 'CREATED'],
    actors.map((a) => [
      a.actorId,
      a.name,
      a.key ?? '-',
      a.state,
      String(a.generation),
      a.runnerId ?? '-',
      a.createdAt.replace(/\.\d+Z$/, 'Z'),
    ]),
  );
}

function parseJsonArgument(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`not JSON (${(err as Error).message}).`);
  }
}

function parseLimit(value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('must be a positive integer.');
  return Number(value);
}
