/**
 * A runner speaks only for its own connections (DESIGN §5): a frame about a client request is
 * taken from the runner the request is attached to, for the actor it is for, and from no other.
 * The start this gateway delivered to a runner (the latest StartActor of that actor generation
 * went out on its connection) may also speak for that generation's requests: it reports what it
 * restored (H5), closes restored requests it has no record of (L\M), and may accept a request
 * whose client has already gone, which the gateway answers with a close so the actor does not
 * keep it.
 */
import type { RunnerTunnelFrame } from '../protocol/runner-protocol.js';

/** A runner connection as the rule sees it. */
export interface SpeakingRunner {
  readonly runnerId: string;
  /** Whether this connection delivered the StartActor of that actor generation (the latest one). */
  startedHere(actorId: string, generation: number): boolean;
}

/** A request this gateway holds: the actor it is for, and the runner it is attached to (if any). */
export interface HeldRequest {
  readonly actorId: string;
  readonly runnerId: string | null;
  /** A hibernating socket still takes frames and closes from its stopping generation (H9). */
  takesOutputFrom?(runnerId: string, generation: number): boolean;
}

/** Take the frame, drop it, or (its client is gone) close the request toward the actor. */
export type Verdict = 'take' | 'drop' | 'closeOrphan';

export function judgeRunnerFrame(
  runner: SpeakingRunner,
  frame: RunnerTunnelFrame,
  held: HeldRequest | undefined,
): Verdict {
  const startedHere = runner.startedHere(frame.actorId, frame.generation);
  if (!held) return frame.message.kind === 'wsOpenAck' && startedHere ? 'closeOrphan' : 'drop';
  if (held.actorId !== frame.actorId) return 'drop';
  if (held.runnerId === runner.runnerId) return 'take';
  const output = frame.message.kind === 'wsMessage' || frame.message.kind === 'wsClose';
  if (output && held.takesOutputFrom?.(runner.runnerId, frame.generation)) return 'take';
  return frame.message.kind === 'wsClose' && startedHere ? 'take' : 'drop';
}

/** A start's restore report (H5) comes from the runner that start was delivered to. */
export function mayReportRestored(runner: SpeakingRunner, actorId: string, generation: number): boolean {
  return runner.startedHere(actorId, generation);
}
