import { createCipheriv, randomBytes } from 'node:crypto';

/** The part of a KeyProvider (`@warden/kms`) this needs. */
interface DataKeySource {
  readonly provider: string;
  generateDataKey(
    context: Record<string, string>,
  ): Promise<{ keyId: string; wrapped: Buffer; plaintext: Buffer }>;
}

/**
 * A secret sealed as releases before the kinds wrote it (seal format 1): KMS context
 * `{tenant_id, connected_account_id}` and AAD `warden/credential/v1`, whatever the secret was,
 * with `legacyId` the name that format used (the row id; `sso:<tenant>` for an SSO client
 * secret; `oauth_server_keys` for the sign-in server's keys). Tests use it to stand for rows an
 * older release left in the database.
 */
export async function sealInFirstFormat(
  keys: DataKeySource,
  tenantId: string,
  legacyId: string,
  plaintext: Buffer,
) {
  const generated = await keys.generateDataKey({ tenant_id: tenantId, connected_account_id: legacyId });
  try {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', generated.plaintext, iv);
    cipher.setAAD(Buffer.from(`warden/credential/v1\u0000${tenantId}\u0000${legacyId}`, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return {
      keyProvider: keys.provider,
      keyId: generated.keyId,
      wrappedKey: generated.wrapped,
      iv,
      ciphertext,
      format: 1 as const,
    };
  } finally {
    generated.plaintext.fill(0);
  }
}
