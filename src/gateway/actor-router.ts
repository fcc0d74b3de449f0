/**
 * The one route to a running actor, for tunnelled HTTP requests and WebSocket opens alike: wait
 * until the registry shows the actor running (waking it on the way, through the Waker), hand
 * the request to that generation, and when the runner answers that it does not host it (it
 * stopped or moved meanwhile), wait for a newer generation and hand it over again. When the
 * runner is connected to no gateway right now (it is moving to another one after its gateway
 * died, DESIGN §2.1), wait for it to come back, at most the runner-lost threshold (past it the
 * actor moves and the registry says where), and hand it over again. The whole route is bounded
 * by the wake timeout.
 */
import { NotHosted, RunnerUnreachable } from '../errors.js';
import type { Logger } from '../log.js';
import type { ActorWatch, RunningActor } from './actor-watch.js';
import type { WakeTrigger } from './metrics.js';
import type { Waker } from './wakes.js';

/** Hands the request to the running actor; throws NotHosted if its runner does not host that generation. */
export type SendToActor<T> = (actor: RunningActor) => Promise<T>;

export interface RouterTiming {
  wakeTimeoutMs: number;
  runnerLostMs: number;
}

/** Resolves once the runner connects to some gateway, or at `untilMs` (Date.now() time). */
export type RunnerBack = (runnerId: string, untilMs: number) => Promise<void>;

export class ActorRouter {
  constructor(
    private readonly watch: ActorWatch,
    private readonly waker: Waker,
    private readonly runnerBack: RunnerBack,
    private readonly timing: RouterTiming,
    private readonly log: Logger,
  ) {}

  /**
   * Throws ActorNotFound, ActorDestroyed, ActorUnavailable (not running in time), or whatever
   * `send` throws but NotHosted (and RunnerUnreachable before the deadline).
   */
  async route<T>(
    actorId: string,
    trigger: WakeTrigger,
    send: SendToActor<T>,
    /** False once the request no longer needs the actor (a late answer settled it): no more wakes. */
    wanted: () => boolean = () => true,
  ): Promise<T> {
    const deadline = Date.now() + this.timing.wakeTimeoutMs;
    const wake = () => {
      if (wanted()) this.waker.wake(actorId, trigger);
    };
    let staleGeneration: number | undefined;
    for (;;) {
      const actor = await this.watch.waitUntilRunning(actorId, {
        deadline,
        wake,
        ...(staleGeneration === undefined ? {} : { staleGeneration }),
      });
      try {
        return await send(actor);
      } catch (err) {
        if (err instanceof RunnerUnreachable && Date.now() < deadline) {
          this.log.debug({ actorId, runnerId: actor.runnerId }, 'runner away; waiting for it to connect again');
          await this.runnerBack(actor.runnerId, Math.min(deadline, Date.now() + this.timing.runnerLostMs));
          continue;
        }
        if (!(err instanceof NotHosted)) throw err;
        this.log.debug(
          { actorId, generation: actor.generation },
          'actor not hosted any more; waiting for the next generation',
        );
        staleGeneration = actor.generation;
      }
    }
  }
}
