/**
 * The LISTEN/NOTIFY channels of the control plane. Payloads stay small (NOTIFY caps them at
 * 8000 bytes): a notification says *what changed*, the listener reads the rows.
 */
import type { ActorState } from '../workflows/actor-api.js';

/** Payload: the runner id whose command queue has new rows. */
export const COMMANDS_CHANNEL = 'dormouse_commands';

/** Payload: JSON `ActorStateNotice`. */
export const ACTOR_STATE_CHANNEL = 'dormouse_actor_state';

export interface ActorStateNotice {
  actorId: string;
  state: ActorState;
  generation: number;
  /** The runner the actor is placed on in this state, if any. */
  runnerId: string | null;
}

/** Reads a notice payload; null if it is not one (logged by the caller). */
export function parseActorStateNotice(payload: string): ActorStateNotice | null {
  try {
    const notice = JSON.parse(payload) as Partial<ActorStateNotice>;
    if (typeof notice.actorId !== 'string' || typeof notice.state !== 'string' || typeof notice.generation !== 'number')
      return null;
    return {
      actorId: notice.actorId,
      state: notice.state,
      generation: notice.generation,
      runnerId: notice.runnerId ?? null,
    };
  } catch {
    return null;
  }
}
