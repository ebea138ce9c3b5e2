// /readyz is ready when nothing blocks it, each blocker under its own name. Today one thing blocks it:
// SIGTERM, under "draining". A certificate or a caBundle needs no blocker: the server listens only once its
// certificate is loaded and, with self-managed certificates, the caBundle trusts its CA (main.ts).

export class Readiness {
  readonly #blockers = new Set<string>();

  block(reason: string): void {
    this.#blockers.add(reason);
  }

  unblock(reason: string): void {
    this.#blockers.delete(reason);
  }

  get ready(): boolean {
    return this.#blockers.size === 0;
  }

  get draining(): boolean {
    return this.#blockers.has(DRAINING);
  }

  get reasons(): string[] {
    return [...this.#blockers];
  }
}

export const DRAINING = 'draining';
