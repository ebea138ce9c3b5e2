// The program the image runs: src/main.ts and every runtime dependency bundled into one ES module file
// (esbuild). Why a bundle rather than the TypeScript sources and node_modules: @kubernetes/client-node's
// entry loads all ~2,700 files of its generated API (25 MB of JavaScript) although the webhook uses
// only KubeConfig and Watch; bundling keeps what is reachable. Measured on the idle process (modules
// loaded, nothing started): 161-167 MiB resident from the sources, 89-91 MiB from the bundle, which
// also loads in 150-250 ms instead of 650-730 ms (the benchmarks' analysis.md).
// Not bundleable as it stands: pino transports (worker threads loading files by path); the webhook logs
// to stdout without one.
//
// client-node's config module (KubeConfig) also imports its generated API and undici for two methods the
// webhook never calls (makeApiClient, and the fetch dispatcher of applySecurityAuthentication): those two
// imports are replaced by stubs that throw if ever reached, which keeps about 2 MB of JavaScript out of the
// bundle (src/kube/http.ts uses loadFrom*, getCurrentCluster and applyToHTTPSOptions only).
//
//   npm run build -- <outfile>        (the Dockerfile runs `node src/build.ts /app/dist/main.mjs`)

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build, type Metafile, type Plugin } from 'esbuild';

const ENTRY = path.join(import.meta.dirname, 'main.ts');

// Bundled CommonJS dependencies (fastify, pino, node-forge) call require() for Node's built-in modules;
// an ES module has no require, so the bundle makes one.
const REQUIRE_SHIM = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";

/** Imports of client-node's config module that the webhook's use of KubeConfig never reaches. */
const UNREACHED_CONFIG_IMPORTS: Readonly<Record<string, readonly string[]>> = {
  './gen/index.js': ['createConfiguration', 'ServerConfiguration'],
  undici: ['Agent', 'ProxyAgent'],
};

const stubUnreachedImports: Plugin = {
  name: 'stub-unreached-client-node-imports',
  setup(builder) {
    builder.onResolve({ filter: /^(\.\/gen\/index\.js|undici)$/ }, (args) =>
      /@kubernetes\/client-node\/dist\/config\.js$/.test(args.importer) ? { path: args.path, namespace: 'unreached' } : undefined,
    );
    builder.onLoad({ filter: /.*/, namespace: 'unreached' }, (args) => {
      const names = UNREACHED_CONFIG_IMPORTS[args.path] ?? [];
      const thrower = `function unreached() { throw new Error(${JSON.stringify(`${args.path} of @kubernetes/client-node is not in the bundle (src/build.ts)`)}); }`;
      return { contents: `${thrower}\n${names.map((name) => `export const ${name} = unreached;`).join('\n')}\n`, loader: 'js' };
    });
  },
};

/**
 * Writes the bundle to `outfile` (a .mjs path) and the licences of the packages in it to <name>.LICENSES.txt
 * beside it; throws with esbuild's messages when the build fails or warns.
 */
export async function bundleWebhook(outfile: string): Promise<{ bytes: number; packages: number }> {
  const result = await build({
    entryPoints: [ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    banner: { js: REQUIRE_SHIM },
    // The licences of the bundled packages are written in full beside the bundle (below).
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
    plugins: [stubUnreachedImports],
  });
  if (result.warnings.length > 0) {
    throw new Error(`the bundle built with warnings:\n${result.warnings.map((warning) => `  ${warning.text} (${warning.location?.file ?? '?'}:${warning.location?.line ?? '?'})`).join('\n')}`);
  }
  const packages = bundledPackages(result.metafile);
  writeFileSync(`${outfile.replace(/\.mjs$/, '')}.LICENSES.txt`, licenceNotice(packages));
  const output = Object.values(result.metafile.outputs).find((entry) => entry.entryPoint !== undefined);
  return { bytes: output?.bytes ?? 0, packages: packages.length };
}

/** The package directories (node_modules/<name>, nested ones included) that contributed code to the bundle. */
function bundledPackages(metafile: Metafile): string[] {
  const roots = new Set<string>();
  for (const input of Object.keys(metafile.inputs)) {
    const root = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1];
    if (root) roots.add(root);
  }
  return [...roots].sort();
}

/** Each bundled package's name, version, licence and licence text: what its licence asks to travel with copies. */
function licenceNotice(packageDirs: readonly string[]): string {
  const sections = packageDirs.map((dir) => {
    const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string; license?: string };
    const licenceFile = readdirSync(dir).find((file) => /^(licen[cs]e|copying)(\.|$)/i.test(file));
    const text = licenceFile ? readFileSync(path.join(dir, licenceFile), 'utf8').trim() : `(no licence file in the package; package.json says: ${manifest.license ?? 'nothing'})`;
    return `${manifest.name ?? dir}@${manifest.version ?? '?'} (${manifest.license ?? 'licence not stated'})\n\n${text}\n`;
  });
  return `Third-party packages bundled into main.mjs\n\n${sections.join(`\n${'-'.repeat(72)}\n\n`)}`;
}

if (import.meta.main) {
  const outfile = process.argv[2];
  if (!outfile || !outfile.endsWith('.mjs')) {
    process.stderr.write('usage: node src/build.ts <outfile.mjs>\n');
    process.exit(2);
  }
  const { bytes, packages } = await bundleWebhook(path.resolve(outfile));
  process.stdout.write(`${outfile}: ${(bytes / 1024 / 1024).toFixed(1)} MiB, ${packages} packages bundled\n`);
}
