// Node test runner global setup (--test-global-setup): one control plane and one webhook for the whole
// run, started before the first test file and stopped after the last. Test files run in their own
// processes and find the environment through the state file named by CONFIG_CHECKSUM_E2E_STATE.
// A failure here fails the run (the runner exits non-zero): e2e tests are never skipped silently.
// With E2E_WEBHOOK_RUNTIME=container and E2E_WEBHOOK_IMAGE, the webhook is that image under podman
// (src/local/container.ts); test/run.ts runs the installation and admission suites that way.

import path from 'node:path';
import { controlPlaneBinaries } from '../../src/local/binaries.ts';
import { startEnvironment, STATE_ENV, type Environment } from '../../src/local/environment.ts';
import { IMAGE_ENV, requestedImage, RUNTIME_ENV } from '../../src/local/container.ts';

let environment: Environment | undefined;

const say = (line: string): void => {
  process.stderr.write(`[e2e] ${line}\n`);
};

export async function globalSetup(): Promise<void> {
  let binDir: string;
  try {
    binDir = controlPlaneBinaries(say);
  } catch (error) {
    throw new Error(`${(error as Error).message}; e2e tests cannot run`, { cause: error });
  }
  // E2E_WEBHOOK_RUNTIME=container with E2E_WEBHOOK_IMAGE: the run's webhook is the image under podman.
  const containerImage = requestedImage();
  if (containerImage) say(`${RUNTIME_ENV}=container: the webhook runs as the image ${containerImage} (${IMAGE_ENV})`);
  const started = Date.now();
  environment = await startEnvironment({ binDir, log: say, ...(containerImage ? { containerImage } : {}) });
  process.env[STATE_ENV] = environment.statePath;
  const { timings, runDir } = environment.state;
  say(`ready in ${Date.now() - started} ms (control plane ${timings.controlPlaneMs} ms, webhook ${timings.webhookMs} ms); run directory ${runDir}`);
}

export async function globalTeardown(): Promise<void> {
  if (!environment) return;
  // The runner sets a non-zero exit code when a test failed: keep the logs for the post-mortem then.
  const failed = Number(process.exitCode ?? 0) !== 0;
  const keep = failed || process.env['E2E_KEEP_RUN_DIR'] === '1';
  await environment.stop({ keepRunDir: keep });
  if (keep) say(`logs kept in ${path.join(environment.state.runDir, 'logs')}`);
  environment = undefined;
}
