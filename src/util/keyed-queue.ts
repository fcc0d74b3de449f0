/**
 * Runs tasks one at a time per key, in the order they were queued; tasks of different keys run
 * concurrently. Used where order matters per actor (a runner's commands, an actor's events) but
 * actors must not wait for each other. A key's entry is dropped once its queue is empty.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();

  /** Queues `task` behind the key's earlier tasks; resolves or rejects with its own outcome. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task);
    // The queue goes on whatever this task does; its failure is the caller's to handle.
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Keys with queued or running tasks. */
  get size(): number {
    return this.tails.size;
  }
}
