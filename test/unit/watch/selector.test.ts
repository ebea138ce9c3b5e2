import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labelSelectorString, SelectorError } from '../../../src/watch/selector.ts';

test('namespace opt-in selector becomes a set-based label selector', () => {
  assert.equal(
    labelSelectorString({ matchExpressions: [{ key: 'config-checksum.io/inject', operator: 'In', values: ['enabled'] }] }),
    'config-checksum.io/inject in (enabled)',
  );
});

test('cluster-wide selector keeps every exclusion', () => {
  assert.equal(
    labelSelectorString({
      matchLabels: { team: 'a' },
      matchExpressions: [
        { key: 'config-checksum.io/inject', operator: 'NotIn', values: ['disabled'] },
        { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public'] },
        { key: 'x', operator: 'Exists' },
        { key: 'y', operator: 'DoesNotExist' },
      ],
    }),
    'team=a,config-checksum.io/inject notin (disabled),kubernetes.io/metadata.name notin (kube-system,kube-public),x,!y',
  );
});

test('an absent or empty selector matches everything, as the API server reads it', () => {
  assert.equal(labelSelectorString(undefined), '');
  assert.equal(labelSelectorString({}), '');
});

test('an unknown operator is an error, not a silently wider scope', () => {
  assert.throws(() => labelSelectorString({ matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] }), SelectorError);
});
