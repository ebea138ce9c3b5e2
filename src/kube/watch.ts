// The watch streams of the reflectors (watch/reflector.ts): client-node's Watch, whose inactivity timeout
// (30 s) also serves as the watchdog for a silently dead connection. Behind an interface, so the
// reflector can be driven without an API server.

import { Watch, type KubeConfig } from '@kubernetes/client-node';

export interface WatchSource {
  /**
   * Opens `path` with `query` (resourceVersion, allowWatchBookmarks, timeoutSeconds, labelSelector);
   * `onEvent` gets each event's type and object, `onDone` the end of the stream (an error, or none).
   * Resolves with the controller that closes the stream.
   */
  watch(
    path: string,
    query: Record<string, string | number | boolean>,
    onEvent: (phase: string, object: unknown) => void,
    onDone: (error: unknown) => void,
  ): Promise<AbortController>;
}

export function watchSource(kubeConfig: KubeConfig): WatchSource {
  return new Watch(kubeConfig);
}
