// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: only the holder writes; others
// take over when the holder has not renewed for a lease duration. Expiry is judged by the local clock
// from when this process last saw the record change, never by comparing clocks across machines.
// Writes use the Lease's resourceVersion, so two candidates cannot both win (optimistic concurrency).

import { asObject, asString, type JsonObject } from '../util/json.ts';
import type { KubeHttp } from '../kube/http.ts';
import { createLease, getLease, updateLease } from '../kube/leases.ts';

export interface LeaderOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly leaseDurationSeconds: number;
  /** How often a candidate tries and the leader renews. */
  readonly retryPeriodMs: number;
  readonly onChange: (leading: boolean) => void;
  readonly onError?: (error: unknown) => void;
}

export class LeaderElector {
  readonly #http: KubeHttp;
  readonly #options: LeaderOptions;
  #leading = false;
  #observedRecord = '';
  #observedAt = 0;
  #lastRenewOk = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(http: KubeHttp, options: LeaderOptions) {
    this.#http = http;
    this.#options = options;
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    void this.#tick();
  }

  /** Stops and, if leading, releases the lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#leading) {
      this.#setLeading(false);
      await this.#release().catch((error: unknown) => this.#options.onError?.(error));
    }
  }

  async #tick(): Promise<void> {
    try {
      await this.#tryAcquireOrRenew();
    } catch (error) {
      this.#options.onError?.(error);
    }
    // A leader that could not renew for 2/3 of the lease duration steps down, before any other replica
    // may consider the lease expired: two leaders never write at once (client-go's renew deadline).
    if (this.#leading && performance.now() - this.#lastRenewOk > (this.#options.leaseDurationSeconds * 1000 * 2) / 3) this.#setLeading(false);
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#tick(), this.#options.retryPeriodMs);
  }

  async #tryAcquireOrRenew(): Promise<void> {
    // A call slower than one retry period counts as failed: a leader must notice in time to step down.
    const timeoutMs = this.#options.retryPeriodMs;
    const lease = await getLease(this.#http, this.#options, timeoutMs);
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'); // MicroTime
    const ours = { holderIdentity: this.#options.identity, leaseDurationSeconds: this.#options.leaseDurationSeconds, renewTime: now };

    if (!lease) {
      if (await createLease(this.#http, this.#options, { ...ours, acquireTime: now, leaseTransitions: 0 }, timeoutMs)) this.#won();
      return;
    }
    const spec = asObject(lease['spec']) ?? {};
    const holder = asString(spec['holderIdentity']) ?? '';
    const mine = holder === this.#options.identity;
    if (!mine && !this.#expired(spec, holder)) return this.#lost();
    const taken = mine ? {} : { acquireTime: now, leaseTransitions: (Number(spec['leaseTransitions']) || 0) + 1 };
    const renewed = await updateLease(this.#http, this.#options, { ...lease, spec: { ...spec, ...ours, ...taken } } satisfies JsonObject, timeoutMs);
    if (renewed) this.#won();
    else this.#lost();
  }

  #lost(): void {
    if (this.#leading) this.#setLeading(false);
  }

  /**
   * Whether the record has not changed for a lease duration, judged by this process's clock from when it
   * last saw the record change (never by comparing clocks across machines), or has no holder.
   */
  #expired(spec: JsonObject, holder: string): boolean {
    const record = `${holder}|${asString(spec['renewTime']) ?? ''}`;
    if (record !== this.#observedRecord) {
      this.#observedRecord = record;
      this.#observedAt = performance.now();
    }
    const durationMs = (Number(spec['leaseDurationSeconds']) || this.#options.leaseDurationSeconds) * 1000;
    return holder === '' || performance.now() - this.#observedAt > durationMs;
  }

  #won(): void {
    this.#lastRenewOk = performance.now();
    if (!this.#leading) this.#setLeading(true);
  }

  async #release(): Promise<void> {
    const lease = await getLease(this.#http, this.#options);
    const spec = asObject(lease?.['spec']) ?? {};
    if (!lease || spec['holderIdentity'] !== this.#options.identity) return;
    await updateLease(this.#http, this.#options, { ...lease, spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1 } });
  }

  #setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#options.onChange(leading);
  }
}
