// The image as the Dockerfile describes it, so that its exact command runs outside Docker (there is no
// engine here): the build stage's steps, what the run stage copies from it, its ENV, LABELs and ENTRYPOINT.
// (test/image/build-image.sh builds the real image, where podman and buildah are installed.)
// Every webhook process of the e2e run and the benchmarks is the image's program: the bundle that
// src/build.ts makes, started with the ENTRYPOINT's node flags.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWebhook } from '../build.ts';

const DOCKERFILE = path.resolve(import.meta.dirname, '..', '..', 'Dockerfile');

export interface ImageRecipe {
  /** WORKDIR of the build stage, and its RUN commands in order (shell form). */
  readonly build: { readonly workdir: string; readonly steps: readonly string[] };
  /** The run stage: WORKDIR, `COPY --from=build <from> <to>` pairs, ENV, LABEL, ENTRYPOINT (exec form). */
  readonly run: {
    readonly workdir: string;
    readonly copies: ReadonlyArray<{ readonly from: string; readonly to: string }>;
    readonly env: Readonly<Record<string, string>>;
    /** LABEL key="value" (quotes removed; an ARG reference such as ${SOURCE_URL} stays as written). */
    readonly labels: Readonly<Record<string, string>>;
    readonly entrypoint: readonly string[];
  };
}

/** Reads the two stages of the Dockerfile; throws when it is not the shape this harness can follow. */
export function readImageRecipe(dockerfile = DOCKERFILE): ImageRecipe {
  const text = readFileSync(dockerfile, 'utf8');
  // Shapes this reader would misread rather than follow: say so instead of running something else.
  if (/\\\s*$/m.test(text)) throw new Error('the Dockerfile continues a line with "\\"; image.ts reads one instruction per line');
  if (/^COPY --from=build\s+--/m.test(text)) throw new Error('a COPY --from=build with more flags; image.ts reads only "COPY --from=build <from> <to>"');
  if (/^ENV \S+=\S*\s+\S+=/m.test(text)) throw new Error('an ENV with several assignments; image.ts reads one per line');
  const badLabel = /^LABEL (?!\S+=(?:"(?:[^"\\]|\\.)*"|[^\s"]+)\s*$).*$/m.exec(text);
  if (badLabel) throw new Error(`${badLabel[0]}: image.ts reads one LABEL key=value (or key="value") per line`);
  const stages = text.split(/^(?=FROM )/m).filter((stage) => stage.startsWith('FROM '));
  const buildStage = stages.find((stage) => /^FROM \S+ AS build\s*$/m.test(stage));
  const runStage = stages.at(-1);
  if (!buildStage || !runStage || runStage === buildStage) throw new Error('the Dockerfile has no "AS build" stage followed by a run stage');
  const lines = (stage: string, instruction: string): string[] =>
    [...stage.matchAll(new RegExp(`^${instruction} (.+)$`, 'gm'))].map((match) => match[1]!.trim());
  const entrypoint = lines(runStage, 'ENTRYPOINT').at(-1);
  if (!entrypoint?.startsWith('[')) throw new Error('the run stage has no exec-form ENTRYPOINT');
  return {
    build: { workdir: lines(buildStage, 'WORKDIR').at(-1) ?? '/', steps: lines(buildStage, 'RUN') },
    run: {
      workdir: lines(runStage, 'WORKDIR').at(-1) ?? '/',
      copies: lines(runStage, 'COPY --from=build').map((copy) => {
        const [from, to, ...more] = copy.split(/\s+/);
        if (!from?.startsWith('/') || !to || more.length > 0) throw new Error(`COPY --from=build ${copy}: expected an absolute source and one destination`);
        return { from, to };
      }),
      env: Object.fromEntries(lines(runStage, 'ENV').map((assignment) => {
        const equals = assignment.indexOf('=');
        if (equals <= 0) throw new Error(`ENV ${assignment}: expected NAME=value`);
        return [assignment.slice(0, equals), assignment.slice(equals + 1)];
      })),
      labels: Object.fromEntries(lines(runStage, 'LABEL').map((label) => {
        const equals = label.indexOf('=');
        const value = label.slice(equals + 1);
        return [label.slice(0, equals), value.startsWith('"') ? (JSON.parse(value) as string) : value];
      })),
      entrypoint: JSON.parse(entrypoint) as string[],
    },
  };
}

/** The ENTRYPOINT's node flags: everything between "node" and the program file. */
export function entrypointNodeFlags(recipe: ImageRecipe = readImageRecipe()): string[] {
  const [command, ...rest] = recipe.run.entrypoint;
  if (command !== 'node') throw new Error(`the ENTRYPOINT runs ${String(command)}, not node`);
  return rest.filter((arg) => arg.startsWith('--'));
}

/**
 * Bundles the webhook into `dir` as the image's build stage does (src/build.ts) and returns what follows
 * `node` to run it as the ENTRYPOINT does: [...node flags, <dir>/main.mjs].
 */
export async function buildImageProgram(dir: string): Promise<string[]> {
  const program = path.join(dir, 'main.mjs');
  await bundleWebhook(program);
  return [...entrypointNodeFlags(), program];
}
