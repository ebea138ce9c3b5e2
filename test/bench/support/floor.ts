// The memory floors of the idle and scale scenarios (load/idle.mjs): node under the same flags as the
// webhook, loading nothing, only the TLS built-ins, or the webhook's whole program, and doing nothing.
// Whatever the webhook holds above them is its own.

import { forkChild } from './children.ts';

export type FloorLoad = 'bare' | 'builtins' | 'program';

export interface FloorFigures {
  readonly rssBytes: number;
  readonly rssAnonBytes: number;
  readonly rssFileBytes: number;
  readonly vmHwmBytes: number;
  readonly loadMs: number;
}

/**
 * One idle process with the image's node flags (everything in `program` before the bundle) plus
 * `nodeOptions`, measured after `restMs`. Never under the memory limit: an idle process's few MiB of heap
 * are far below any heap limit, so the limit cannot change its figure.
 */
export async function idleFloor(program: readonly string[], nodeOptions: string, load: FloorLoad, restMs: number): Promise<FloorFigures> {
  const imageFlags = program.slice(0, -1);
  const argument = { load: load === 'program' ? program.at(-1) : load, restMs };
  const child = forkChild<FloorFigures>('load/idle.mjs', argument, { nodeArgs: [...imageFlags, ...nodeOptions.split(' ').filter(Boolean)] });
  try {
    return await child.message;
  } finally {
    await child.stop();
  }
}
