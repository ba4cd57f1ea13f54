import type { AuditCaller } from '@warden/audit';
import { removeKeyVersion } from '@warden/kms';
import { KEYS_RETIRED_CHANNEL } from './container.ts';
import type { Container } from './container.ts';

export type RetireOutcome =
  { readonly retired: string; readonly replicasTold: boolean } | { readonly refused: string };

/**
 * Retires a key-encryption key once no data key is wrapped under it: recorded in the system
 * trail, removed from the local key file (an AWS KMS key is then the operator's to disable),
 * and announced on the bus so every running replica forgets it and the data keys it unwrapped
 * at once — a backup from before the rotation then opens nowhere, without a restart.
 */
export async function retireKey(c: Container, target: string, actor?: AuditCaller): Promise<RetireOutcome> {
  const kms = c.config.kms;
  const keyId = kms.provider === 'local' ? `local:v${target.replace(/^local:v/, '')}` : target;
  const remaining = await c.keyRotation.countWrappedUnder(keyId);
  if (remaining > 0) {
    return {
      refused: `${remaining} data key(s) are still wrapped under ${keyId}; run \`warden keys rotate\` first`,
    };
  }
  await c.recordSystemEvent('key.retired', { key_id: keyId }, actor);
  if (kms.provider === 'local') removeKeyVersion(kms.keyFile, Number(keyId.slice('local:v'.length)));
  c.keys.reload();
  c.envelope.cache.clear();
  const replicasTold = await c.bus.publish(KEYS_RETIRED_CHANNEL, { keyId }).then(
    () => true,
    () => false,
  );
  return { retired: keyId, replicasTold };
}

/** What a replica does when another process retired a key. */
export function forgetRetiredKey(c: Container): void {
  c.keys.reload();
  c.envelope.cache.clear();
}
