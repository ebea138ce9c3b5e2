// A metav1.LabelSelector (as in the webhook's namespaceSelector) to the string form of ?labelSelector=.
// The watcher derives its scope from the MutatingWebhookConfiguration object itself, so the API server
// (admissions) and the watcher (ConfigMap changes) always agree on which namespaces are in scope.

import { asArray, asObject, asString, stringEntries } from '../util/json.ts';

export class SelectorError extends Error {
  override readonly name = 'SelectorError';
}

export function labelSelectorString(selector: unknown): string {
  const object = asObject(selector);
  if (!object) return ''; // absent selector: everything, as the API server reads it
  const terms = stringEntries(object['matchLabels']).map(([key, value]) => `${key}=${value}`);
  for (const expression of asArray(object['matchExpressions'])) terms.push(expressionTerm(asObject(expression)));
  return terms.join(',');
}

/** One matchExpressions entry in the ?labelSelector= syntax; an operator we do not know is an error, never a wider scope. */
function expressionTerm(term: ReturnType<typeof asObject>): string {
  const key = asString(term?.['key']);
  const operator = asString(term?.['operator']);
  const values = asArray(term?.['values']).filter((value): value is string => typeof value === 'string');
  if (!key || !operator) throw new SelectorError('matchExpressions entry without key or operator');
  switch (operator) {
    case 'In':
      return `${key} in (${values.join(',')})`;
    case 'NotIn':
      return `${key} notin (${values.join(',')})`;
    case 'Exists':
      return key;
    case 'DoesNotExist':
      return `!${key}`;
    default:
      throw new SelectorError(`unknown selector operator "${operator}"`);
  }
}
