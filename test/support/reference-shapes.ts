// The reference-shape tables of test/unit/references.test.ts (ConfigMaps) and secret-references.test.ts
// (Secrets): each shape builds a pod template that consumes one source, optionally, from a given place.

export type Placement = 'containers' | 'initContainers' | 'template';

export interface Shape {
  readonly name: string;
  /** True when the shape selects one key; false when it consumes every key. */
  readonly keyed: boolean;
  readonly placements: readonly Placement[];
  /** The annotation has no optional form: a name listed there is always required. */
  readonly canBeOptional: boolean;
  build(optional: boolean, placement: Placement): { template: Record<string, unknown>; annotations?: Record<string, string> };
}

export const optionalField = (optional: boolean): { optional?: true } => (optional ? { optional: true } : {});

/** A pod template with `container`'s fields in the app container or in an init container, and `volumes`. */
export function podTemplate(placement: Placement, container: Record<string, unknown>, volumes?: unknown[]): Record<string, unknown> {
  const plain = { name: 'app', image: 'app:1' };
  return {
    metadata: { labels: { app: 'web' } },
    spec: {
      ...(placement === 'initContainers' ? { initContainers: [{ name: 'init', image: 'init:1', ...container }] } : {}),
      containers: [placement === 'containers' ? { ...plain, ...container } : plain],
      ...(volumes ? { volumes } : {}),
    },
  };
}
