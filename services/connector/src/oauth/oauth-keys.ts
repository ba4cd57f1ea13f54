import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import type { JsonWebKey } from 'node:crypto';
import type { Database } from '@warden/db';
import { SYSTEM_TENANT, sealIdentity, sealedColumns, sealedFromColumns } from '@warden/vault';
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
const IDENTITY: SealIdentity = sealIdentity('oauth_server_keys', SYSTEM_TENANT, ROW_ID);

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
        ...sealedColumns(sealed),
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    return loadOAuthServerKeys(db, envelope);
  }
  const sealed = sealedFromColumns(existing);
  if (!sealed) throw new Error('the sealed sign-in server keys are missing');
  const plaintext = await envelope.open(IDENTITY, sealed);
  return JSON.parse(plaintext.toString('utf8')) as OAuthServerKeys;
}
