// /readyz is ready when nothing blocks it. Each part that must finish before traffic is welcome (a loaded
// certificate, an injected caBundle) blocks under its own name; SIGTERM blocks it under "draining".

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
