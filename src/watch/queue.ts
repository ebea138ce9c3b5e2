// Coalescing on a quiet period (DESIGN section 6): a workload is handled once per burst of ConfigMap
// changes. The first change schedules it `quietMs` later; each further change pushes that back to `quietMs`
// after itself, but never past `maxDelayMs` after the first, so a steady trickle of changes cannot postpone a
// rollout forever. A lone change is handled after one quiet period (a second by default), a Helm release
// writing several ConfigMaps within it once, after its last write.
// Rate limit: a global token bucket in front of every write (runaway rollouts have taken API servers down).

export interface PendingChange<T> {
  readonly key: string;
  readonly value: T;
  /** When the first change of this burst was seen (performance.now()), for the reaction-time metric. */
  readonly firstSeenAt: number;
}

export class CoalescingQueue<T> {
  readonly #quietMs: number;
  readonly #maxDelayMs: number;
  readonly #merge: (previous: T, next: T) => T;
  readonly #handle: (change: PendingChange<T>) => void;
  readonly #pending = new Map<string, { value: T; firstSeenAt: number; timer: NodeJS.Timeout }>();

  constructor(quietMs: number, maxDelayMs: number, merge: (previous: T, next: T) => T, handle: (change: PendingChange<T>) => void) {
    this.#quietMs = quietMs;
    this.#maxDelayMs = Math.max(quietMs, maxDelayMs);
    this.#merge = merge;
    this.#handle = handle;
  }

  add(key: string, value: T, delayMs = this.#quietMs): void {
    const now = performance.now();
    const pending = this.#pending.get(key);
    if (pending) clearTimeout(pending.timer);
    const firstSeenAt = pending?.firstSeenAt ?? now;
    const merged = pending ? this.#merge(pending.value, value) : value;
    const due = Math.min(now + delayMs, firstSeenAt + this.#maxDelayMs);
    const timer = setTimeout(() => {
      this.#pending.delete(key);
      this.#handle({ key, value: merged, firstSeenAt });
    }, Math.max(0, due - now));
    this.#pending.set(key, { value: merged, firstSeenAt, timer });
  }

  get size(): number {
    return this.#pending.size;
  }

  clear(): void {
    for (const { timer } of this.#pending.values()) clearTimeout(timer);
    this.#pending.clear();
  }
}

/** Token bucket: `ratePerSecond` tokens a second, at most `burst` saved up. take() waits for a token. */
export class TokenBucket {
  readonly #ratePerSecond: number;
  readonly #burst: number;
  #tokens: number;
  #updatedAt = performance.now();
  #queue: Promise<void> = Promise.resolve();

  constructor(ratePerSecond: number, burst: number) {
    this.#ratePerSecond = ratePerSecond;
    this.#burst = burst;
    this.#tokens = burst;
  }

  /** Waits its turn (first come, first served) and takes one token. */
  take(): Promise<void> {
    const turn = this.#queue.then(() => this.#takeOne());
    this.#queue = turn;
    return turn;
  }

  async #takeOne(): Promise<void> {
    this.#refill();
    if (this.#tokens < 1) {
      await new Promise((resolve) => setTimeout(resolve, ((1 - this.#tokens) / this.#ratePerSecond) * 1000));
      this.#refill();
    }
    this.#tokens -= 1;
  }

  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#updatedAt) / 1000) * this.#ratePerSecond);
    this.#updatedAt = now;
  }
}
