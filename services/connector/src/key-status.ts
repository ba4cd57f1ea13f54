import type { Container } from './container.ts';

export interface KeyStatus {
  readonly provider: string;
  readonly current_key_id: string;
  /** Data keys (one per vaulted secret) wrapped under each key-encryption key. */
  readonly data_keys_by_key: Record<string, number>;
}

/** Which key-encryption key is current and what each key still wraps: `keys status` and the admin API. */
export async function keyStatus(c: Pick<Container, 'db' | 'keys'>): Promise<KeyStatus> {
  const rows = await c.db.kysely
    .selectFrom('sealed_credentials')
    .select(['key_id', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy('key_id')
    .execute();
  return {
    provider: c.keys.provider,
    current_key_id: await c.keys.currentKeyId(),
    data_keys_by_key: Object.fromEntries(rows.map((r) => [r.key_id, Number(r.n)])),
  };
}
