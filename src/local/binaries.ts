// The one place that finds the control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
// kubectl, helm, helm4, helmfile, Flux's kustomize-controller, and flux-crds: the CRDs it needs) for
// `npm start`, `npm test`, the e2e suites and the benchmarks:
// CONTROL_PLANE_BIN when set, else what build-control-plane.sh prints (it builds them from the Go module
// proxy into a cache outside the repository on first use; a warm cache makes it instant).

import { execFileSync } from 'node:child_process';
import path from 'node:path';

export const BUILD_SCRIPT = path.join(import.meta.dirname, 'build-control-plane.sh');

export class ControlPlaneBuildError extends Error {
  override readonly name = 'ControlPlaneBuildError';
}

/** The binary directory; builds first when the cache is cold. `say` tells the user before a build starts. */
export function controlPlaneBinaries(say: (line: string) => void = () => {}): string {
  const fromEnv = process.env['CONTROL_PLANE_BIN'];
  if (fromEnv) return fromEnv;
  say(`CONTROL_PLANE_BIN is not set; running ${path.relative(process.cwd(), BUILD_SCRIPT)} (instant when its cache is warm; the first build takes about 25 minutes on 2 cores)`);
  let output: string;
  try {
    output = execFileSync('bash', [BUILD_SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  } catch (error) {
    throw new ControlPlaneBuildError(`the control-plane binaries could not be built (${path.basename(BUILD_SCRIPT)} failed: ${(error as Error).message})`, { cause: error });
  }
  const binDir = output.trim().split('\n').at(-1);
  if (!binDir) throw new ControlPlaneBuildError(`${path.basename(BUILD_SCRIPT)} printed no binary directory`);
  return binDir;
}
