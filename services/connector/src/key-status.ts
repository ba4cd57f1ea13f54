import type { Container } from './container.ts';

export interface KeyStatus {
  readonly provider: string;
  readonly current_key_id: string;
  /** Data keys (one per sealed secret, in every sealed table) wrapped under each key-encryption key. */
  readonly data_keys_by_key: Record<string, number>;
  /** Sealed secrets still bound in the first format (before kinds); `keys rotate` re-seals them. */
  readonly legacy_format: number;
}

/** Which key-encryption key is current and what each key still wraps: `keys status` and the admin API. */
export async function keyStatus(c: Pick<Container, 'keys' | 'keyRotation'>): Promise<KeyStatus> {
  return {
    provider: c.keys.provider,
    current_key_id: await c.keys.currentKeyId(),
    data_keys_by_key: await c.keyRotation.countByKey(),
    legacy_format: await c.keyRotation.countLegacyFormat(),
  };
}
