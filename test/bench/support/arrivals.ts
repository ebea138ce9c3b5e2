// First arrival times of keyed events (a Deployment reaching a checksum, a ReplicaSet appearing), and
// promises that resolve with them: what the scenarios wait on instead of polling.

export class Arrivals {
  readonly #times = new Map<string, number>();
  readonly #waiters = new Map<string, Array<(at: number) => void>>();

  record(key: string, at: number): void {
    if (this.#times.has(key)) return;
    this.#times.set(key, at);
    for (const resolve of this.#waiters.get(key) ?? []) resolve(at);
    this.#waiters.delete(key);
  }

  get(key: string): number | undefined {
    return this.#times.get(key);
  }

  /** Resolves with the arrival time of `key` (at once if it has arrived); rejects after `timeoutMs`. */
  when(key: string, timeoutMs: number): Promise<number> {
    const known = this.#times.get(key);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${key} within ${timeoutMs} ms`)), timeoutMs);
      const waiters = this.#waiters.get(key) ?? [];
      waiters.push((at) => {
        clearTimeout(timer);
        resolve(at);
      });
      this.#waiters.set(key, waiters);
    });
  }
}
