// A metav1.LabelSelector (as in the webhook's namespaceSelector) to the string form of ?labelSelector=.
// The watcher derives its scope from the MutatingWebhookConfiguration object itself, so the API server
// (admissions) and the watcher (ConfigMap changes) always agree on which namespaces are in scope.

import { asArray, asObject, asString, stringEntries } from '../checksum/json.ts';

export class SelectorError extends Error {
  override readonly name = 'SelectorError';
}

export function labelSelectorString(selector: unknown): string {
  const object = asObject(selector);
  if (!object) return ''; // absent selector: everything, as the API server reads it
  const terms = stringEntries(object['matchLabels']).map(([key, value]) => `${key}=${value}`);
  for (const expression of asArray(object['matchExpressions'])) {
    const term = asObject(expression);
    const key = asString(term?.['key']);
    const operator = asString(term?.['operator']);
    const values = asArray(term?.['values']).filter((value): value is string => typeof value === 'string');
    if (!key || !operator) throw new SelectorError('matchExpressions entry without key or operator');
    switch (operator) {
      case 'In':
        terms.push(`${key} in (${values.join(',')})`);
        break;
      case 'NotIn':
        terms.push(`${key} notin (${values.join(',')})`);
        break;
      case 'Exists':
        terms.push(key);
        break;
      case 'DoesNotExist':
        terms.push(`!${key}`);
        break;
      default:
        throw new SelectorError(`unknown selector operator "${operator}"`);
    }
  }
  return terms.join(',');
}
