/**
 * The search attributes an actor workflow carries, so the Temporal UI can list actors by name,
 * key, state, runner and generation. Each namespace must have them registered (the dev stack
 * and the test harness do it; docker-compose does it with the admin tools).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const ActorNameKey = defineSearchAttributeKey('ActorName', SearchAttributeType.KEYWORD);
export const ActorKeyKey = defineSearchAttributeKey('ActorKey', SearchAttributeType.KEYWORD);
export const ActorStateKey = defineSearchAttributeKey('ActorState', SearchAttributeType.KEYWORD);
export const RunnerIdKey = defineSearchAttributeKey('RunnerId', SearchAttributeType.KEYWORD);
export const ActorGenerationKey = defineSearchAttributeKey('ActorGeneration', SearchAttributeType.INT);

export const ACTOR_SEARCH_ATTRIBUTES = [ActorNameKey, ActorKeyKey, ActorStateKey, RunnerIdKey, ActorGenerationKey];
