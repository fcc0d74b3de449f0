/**
 * The states of actors resting on this runner, as they were last persisted, within a byte
 * budget shared by all of them: a recent rest wakes without reading its state back, and a
 * resting actor still costs only its connection records, whatever the number resting (past the
 * budget, the longest-resting states go first and their wakes read Postgres).
 *
 * A cached state is exact: while the generation lasts, only its own instance writes the actor's
 * state (every KV write is fenced to that runner and generation), and it writes nothing while
 * resting. Entries are keyed by generation, so a later one never takes an earlier one's.
 */
export class RestCache {
  /** In insertion order: the first entry is the one resting longest. */
  private readonly states = new Map<string, { generation: number; state: string }>();
  private bytes = 0;

  constructor(private readonly budgetBytes: number) {}

  /** Keeps a resting actor's state, evicting the longest-resting ones past the budget. */
  keep(actorId: string, generation: number, state: string): void {
    this.drop(actorId);
    const size = Buffer.byteLength(state);
    if (size > this.budgetBytes) return;
    this.states.set(actorId, { generation, state });
    this.bytes += size;
    for (const [id, entry] of this.states) {
      if (this.bytes <= this.budgetBytes) break;
      this.states.delete(id);
      this.bytes -= Buffer.byteLength(entry.state);
    }
  }

  /** The state kept for this generation, if still there; it leaves the cache. */
  take(actorId: string, generation: number): string | undefined {
    const entry = this.states.get(actorId);
    if (!entry) return undefined;
    this.drop(actorId);
    return entry.generation === generation ? entry.state : undefined;
  }

  drop(actorId: string): void {
    const entry = this.states.get(actorId);
    if (!entry) return;
    this.states.delete(actorId);
    this.bytes -= Buffer.byteLength(entry.state);
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.states.size, bytes: this.bytes };
  }
}
