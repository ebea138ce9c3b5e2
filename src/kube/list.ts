// One page of a LIST (the reflectors of watch/reflector.ts).

import { asArray, asObject, asString } from '../util/json.ts';
import { OperationalError } from '../util/errors.ts';
import { ApiError, type KubeHttp } from './http.ts';

export interface ListPage {
  readonly items: readonly unknown[];
  /** Where the next page starts; undefined on the last page. */
  readonly continueToken: string | undefined;
  readonly resourceVersion: string | undefined;
}

/** The list's continuation (or resourceVersion) expired: list again from the start. */
export class GoneError extends OperationalError {
  override readonly name = 'GoneError';
}

export interface ListOptions {
  readonly limit: number;
  readonly labelSelector?: string | undefined;
  readonly continueToken?: string | undefined;
}

export async function listPage(http: KubeHttp, path: string, options: ListOptions): Promise<ListPage> {
  const query = new URLSearchParams({ limit: String(options.limit) });
  if (options.labelSelector) query.set('labelSelector', options.labelSelector);
  if (options.continueToken) query.set('continue', options.continueToken);
  const response = await http.request('GET', `${path}?${query}`);
  if (response.status === 410) throw new GoneError('list continuation expired');
  if (response.status !== 200) throw new ApiError(`LIST ${path}`, response.status);
  const body = asObject(response.json());
  const metadata = asObject(body?.['metadata']);
  return { items: asArray(body?.['items']), continueToken: asString(metadata?.['continue']) || undefined, resourceVersion: asString(metadata?.['resourceVersion']) };
}
