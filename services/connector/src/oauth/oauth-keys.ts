import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import type { JsonWebKey } from 'node:crypto';
import type { Database } from '@warden/db';
import type { Envelope, SealIdentity } from '@warden/vault';
import type { Kysely } from 'kysely';

/**
 * Keys every replica must share: cookie-signing keys (a browser's sign-in may continue on
 * another replica) and the signing key of ID tokens. Made once, sealed with the envelope
 * like a credential, and read by every replica at start.
 */
export interface OAuthServerKeys {
  readonly cookieKeys: readonly string[];
  readonly signingKey: JsonWebKey & { kid: string; alg: string; use: string };
}

const ROW_ID = 'v1';
const IDENTITY: SealIdentity = { tenantId: 'system', connectedAccountId: 'oauth_server_keys' };

function generate(): OAuthServerKeys {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    cookieKeys: [randomBytes(32).toString('base64url')],
    signingKey: { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' },
  };
}

export async function loadOAuthServerKeys(
  db: Kysely<Database>,
  envelope: Envelope,
): Promise<OAuthServerKeys> {
  const existing = await db
    .selectFrom('oauth_server_keys')
    .selectAll()
    .where('id', '=', ROW_ID)
    .executeTakeFirst();
  if (!existing) {
    const sealed = await envelope.seal(IDENTITY, Buffer.from(JSON.stringify(generate()), 'utf8'));
    // Replicas starting together: the first insert wins and everyone reads it back.
    await db
      .insertInto('oauth_server_keys')
      .values({
        id: ROW_ID,
        key_provider: sealed.keyProvider,
        key_id: sealed.keyId,
        wrapped_key: sealed.wrappedKey,
        iv: sealed.iv,
        ciphertext: sealed.ciphertext,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    return loadOAuthServerKeys(db, envelope);
  }
  const plaintext = await envelope.open(IDENTITY, {
    keyProvider: existing.key_provider,
    keyId: existing.key_id,
    wrappedKey: Buffer.from(existing.wrapped_key),
    iv: Buffer.from(existing.iv),
    ciphertext: Buffer.from(existing.ciphertext),
  });
  return JSON.parse(plaintext.toString('utf8')) as OAuthServerKeys;
}
