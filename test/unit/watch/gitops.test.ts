import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { awaitedRevision, fluxOwner } from '../../../src/watch/gitops.ts';
import type { JsonObject } from '../../../src/util/json.ts';

const R1 = 'main@sha1:1111111111111111111111111111111111111111';
const R2 = 'main@sha1:2222222222222222222222222222222222222222';

function kustomization(name: string, status: JsonObject, spec: JsonObject = {}, namespace = 'flux-system'): JsonObject {
  return { metadata: { name, namespace }, spec: { sourceRef: { kind: 'GitRepository', name: 'repo' }, ...spec }, status };
}

/** `config` is applying R2 (lastAttemptedRevision is written before kustomize-controller applies anything). */
const CONFIG = kustomization('config', { lastAttemptedRevision: R2, lastAppliedRevision: R1 });

describe('awaitedRevision: what the workload\'s Kustomization has yet to apply', () => {
  const cases: Array<[string, JsonObject, JsonObject, string | undefined]> = [
    ['app at the old revision, same source: wait for R2', kustomization('app', { lastAppliedRevision: R1 }), CONFIG, R2],
    ['app waiting on its dependency (Ready False, DependencyNotReady, never attempted R2): wait', kustomization('app', { lastAppliedRevision: R1, lastAttemptedRevision: R1, conditions: [{ type: 'Ready', status: 'False', reason: 'DependencyNotReady' }] }), CONFIG, R2],
    ['app applying R2 now (attempted, Ready Unknown): wait', kustomization('app', { lastAppliedRevision: R1, lastAttemptedRevision: R2, conditions: [{ type: 'Ready', status: 'Unknown' }] }), CONFIG, R2],
    ['app never reconciled (no status): wait', kustomization('app', {}), CONFIG, R2],
    ['app applied R2 already', kustomization('app', { lastAppliedRevision: R2 }), CONFIG, undefined],
    ['app tried R2 and failed', kustomization('app', { lastAppliedRevision: R1, lastAttemptedRevision: R2, conditions: [{ type: 'Ready', status: 'False', reason: 'BuildFailed' }] }), CONFIG, undefined],
    ['app suspended', kustomization('app', { lastAppliedRevision: R1 }, { suspend: true }), CONFIG, undefined],
    ['another source name', kustomization('app', { lastAppliedRevision: R1 }, { sourceRef: { kind: 'GitRepository', name: 'other' } }), CONFIG, undefined],
    ['another source kind', kustomization('app', { lastAppliedRevision: R1 }, { sourceRef: { kind: 'OCIRepository', name: 'repo' } }), CONFIG, undefined],
    ['the same source named with its namespace explicitly', kustomization('app', { lastAppliedRevision: R1 }, { sourceRef: { kind: 'GitRepository', name: 'repo', namespace: 'flux-system' } }), CONFIG, R2],
    ['a source of the same name in another namespace', kustomization('app', { lastAppliedRevision: R1 }, {}, 'team-a'), CONFIG, undefined],
    ['config has attempted nothing', kustomization('app', { lastAppliedRevision: R1 }), kustomization('config', {}), undefined],
    ['no sourceRef', { metadata: { name: 'app', namespace: 'flux-system' }, spec: {}, status: {} }, CONFIG, undefined],
  ];
  for (const [name, app, config, expected] of cases) {
    test(name, () => assert.equal(awaitedRevision(app, config), expected));
  }
});

describe('fluxOwner: the Kustomization named by kustomize-controller\'s labels', () => {
  test('both labels: namespace/name', () => {
    assert.equal(fluxOwner({ metadata: { labels: { 'kustomize.toolkit.fluxcd.io/name': 'app', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' } } }), 'flux-system/app');
  });
  test('one label, none, or not strings: no owner', () => {
    assert.equal(fluxOwner({ metadata: { labels: { 'kustomize.toolkit.fluxcd.io/name': 'app' } } }), undefined);
    assert.equal(fluxOwner({ metadata: {} }), undefined);
    assert.equal(fluxOwner({ metadata: { labels: { 'kustomize.toolkit.fluxcd.io/name': 1, 'kustomize.toolkit.fluxcd.io/namespace': 'x' } } }), undefined);
  });
});
