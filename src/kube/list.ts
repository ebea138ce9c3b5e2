// One page of a LIST (the reflectors of watch/reflector.ts).

import { asArray, asObject, asString } from '../util/json.ts';
import { OperationalError } from '../util/errors.ts';
import { ApiError, type KubeHttp } from './http.ts';

export interface ListPage {
  readonly items: readonly unknown[];
  /** Size of the response body, for sizing the next page. */
  readonly bytes: number;
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
  return { items: asArray(body?.['items']), bytes: Buffer.byteLength(response.text), continueToken: asString(metadata?.['continue']) || undefined, resourceVersion: asString(metadata?.['resourceVersion']) };
}

// Pages are bounded by bytes as well as by count: the API server's `limit` counts objects, and 500
// ConfigMaps of 20 KiB (or 9 of 1 MiB) already exceed the client's 8 MiB cap on a response.
export const PAGE_ITEMS = 500;
export const PAGE_TARGET_BYTES = 4 * 1024 * 1024;

/** The next page's `limit`, from the last page's bytes per object: about PAGE_TARGET_BYTES, 1 to `maxItems`. */
export function nextPageLimit(page: Pick<ListPage, 'items' | 'bytes'>, maxItems = PAGE_ITEMS): number {
  if (page.items.length === 0) return maxItems;
  const perItem = page.bytes / page.items.length;
  return Math.max(1, Math.min(maxItems, Math.floor(PAGE_TARGET_BYTES / perItem)));
}
