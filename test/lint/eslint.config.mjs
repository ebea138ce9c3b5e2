// Lint for the product and its tests (npm run lint; npm test runs it after the type check): promise rules
// that catch a forgotten await everywhere, and for src/ the size limits Pepr uses (complexity 10, 20
// statements, 4 parameters), so functions stay small enough to read in one go. Where a function is better
// left over a limit, the disable comment says why.

import path from 'node:path';
import tseslint from 'typescript-eslint';

const root = path.resolve(import.meta.dirname, '..', '..');

export default tseslint.config(
  { ignores: ['node_modules/**', 'test/bench/results/**'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: root },
    },
    rules: {
      // node:test's test() and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Size limits for the product's code; a test reads best as one story, however long, and so does the
    // local control plane's start-up sequence (src/local: npm start and the e2e harness, never bundled).
    files: ['src/**/*.ts'],
    ignores: ['src/local/**'],
    rules: {
      complexity: ['error', 10],
      'max-statements': ['error', 20],
      'max-params': ['error', 4],
    },
  },
);
