/**
 * Requests waiting for a runner to connect again, to this gateway or to another on the bus: a
 * runner whose gateway died moves to the next one within the runner-lost threshold (DESIGN §2.1).
 */
export class RunnerArrivals {
  private readonly waiters = new Map<string, Set<() => void>>();

  /** The runner connected somewhere: everyone waiting for it goes on. */
  arrived(runnerId: string): void {
    const set = this.waiters.get(runnerId);
    this.waiters.delete(runnerId);
    for (const resume of set ?? []) resume();
  }

  /** Resolves once the runner connects, or at `untilMs` (Date.now() time), whichever is first. */
  wait(runnerId: string, untilMs: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(runnerId);
      if (!set) this.waiters.set(runnerId, (set = new Set()));
      const resume = () => {
        clearTimeout(timer);
        set.delete(resume);
        if (set.size === 0 && this.waiters.get(runnerId) === set) this.waiters.delete(runnerId);
        resolve();
      };
      const timer = setTimeout(resume, Math.max(0, untilMs - Date.now()));
      set.add(resume);
    });
  }
}
