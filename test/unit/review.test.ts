// AdmissionReview decoding and the response constructors (src/admission/review.ts).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { allowed, complete, decodeReview, patched } from '../../src/admission/review.ts';

const REQUEST = {
  uid: 'abc',
  kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
  resource: { group: 'apps', version: 'v1', resource: 'deployments' },
  namespace: 'shop',
  name: 'web',
  operation: 'CREATE',
  object: { kind: 'Deployment' },
};

const review = (request: unknown, envelope: Record<string, unknown> = {}): unknown => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request, ...envelope });

describe('decodeReview', () => {
  test('decodes the fields mutate relies on, with defaults for optional ones', () => {
    assert.deepEqual(decodeReview(review(REQUEST)), {
      ok: true,
      request: { uid: 'abc', kind: REQUEST.kind, subResource: '', name: 'web', namespace: 'shop', operation: 'CREATE', object: REQUEST.object, oldObject: undefined, dryRun: false, user: '' },
    });
    // The requester's name is kept for the log line, cut to a bounded length.
    const withUser = decodeReview(review({ ...REQUEST, userInfo: { username: 'system:serviceaccount:config-checksum:config-checksum-webhook' } }));
    assert.ok(withUser.ok && withUser.request.user === 'system:serviceaccount:config-checksum:config-checksum-webhook');
    const longUser = decodeReview(review({ ...REQUEST, userInfo: { username: 'u'.repeat(5000) } }));
    assert.ok(longUser.ok && longUser.request.user.length === 330);
    const decoded = decodeReview(review({ ...REQUEST, subResource: 'scale', dryRun: true, oldObject: { a: 1 } }));
    assert.ok(decoded.ok);
    assert.equal(decoded.request.subResource, 'scale');
    assert.equal(decoded.request.dryRun, true);
    assert.deepEqual(decoded.request.oldObject, { a: 1 });
    // Only a real boolean true is a dry run.
    const notDry = decodeReview(review({ ...REQUEST, dryRun: 'true' }));
    assert.ok(notDry.ok && notDry.request.dryRun === false);
  });

  const malformed: Array<[string, unknown, RegExp]> = [
    ['not an object', [], /must be a JSON object/],
    ['null', null, /must be a JSON object/],
    ['v1beta1', review(REQUEST, { apiVersion: 'admission.k8s.io/v1beta1' }), /expected apiVersion admission.k8s.io\/v1/],
    ['wrong kind', review(REQUEST, { kind: 'TokenReview' }), /kind AdmissionReview/],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /has no request/],
    ['request not an object', review('x'), /has no request/],
    ['no uid', review({ ...REQUEST, uid: undefined }), /request.uid/],
    ['empty uid', review({ ...REQUEST, uid: '' }), /request.uid/],
    ['numeric uid', review({ ...REQUEST, uid: 7 }), /request.uid/],
    ['uid far too long', review({ ...REQUEST, uid: 'u'.repeat(129) }), /request.uid/],
    ['no kind', review({ ...REQUEST, kind: undefined }), /request.kind/],
    ['kind without group', review({ ...REQUEST, kind: { version: 'v1', kind: 'Deployment' } }), /request.kind/],
    ['no operation', review({ ...REQUEST, operation: undefined }), /request.operation/],
  ];
  for (const [label, body, message] of malformed) {
    test(`refuses: ${label}`, () => {
      const decoded = decodeReview(body);
      assert.equal(decoded.ok, false);
      assert.match(decoded.ok ? '' : decoded.message, message);
    });
  }
});

describe('complete', () => {
  test('minimal allow: uid and allowed only', () => {
    assert.deepEqual(complete('u1', allowed()), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u1', allowed: true } });
    assert.deepEqual(complete('u1', patched([])).response, { uid: 'u1', allowed: true });
  });

  test('patch: base64 JSON with patchType; warnings only when present', () => {
    const ops = [{ op: 'add' as const, path: '/metadata/annotations/a~1b', value: 'é' }];
    const response = complete('u2', patched(ops, ['w'])).response;
    assert.equal(response.patchType, 'JSONPatch');
    assert.deepEqual(JSON.parse(Buffer.from(response.patch!, 'base64').toString('utf8')), ops);
    assert.deepEqual(response.warnings, ['w']);
    assert.deepEqual(Object.keys(complete('u3', patched(ops)).response).sort(), ['allowed', 'patch', 'patchType', 'uid']);
  });
});
