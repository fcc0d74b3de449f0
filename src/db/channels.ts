/**
 * The LISTEN/NOTIFY channels of the control plane. Payloads stay small (NOTIFY caps them at
 * 8000 bytes): a notification says *what changed*, the listener reads the rows.
 */

/** Payload: the runner id whose command queue has new rows. */
export const COMMANDS_CHANNEL = 'dormouse_commands';

/** Payload: JSON `ActorStateNotice`. */
export const ACTOR_STATE_CHANNEL = 'dormouse_actor_state';

export interface ActorStateNotice {
  actorId: string;
  state: string;
  generation: number;
}
