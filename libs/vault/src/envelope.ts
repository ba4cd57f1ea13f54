import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { WardenError } from '@warden/core';
import type { EncryptionContext, KeyProvider, WrappedKey } from '@warden/kms';
import { DataKeyCache } from './data-key-cache.ts';
import type { DataKeyCacheOptions } from './data-key-cache.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The row a sealed credential belongs to. It is both the KMS encryption context and the GCM AAD. */
export interface SealIdentity {
  readonly tenantId: string;
  readonly connectedAccountId: string;
}

export interface SealedSecret {
  readonly keyProvider: string;
  readonly keyId: string;
  readonly wrappedKey: Buffer;
  readonly iv: Buffer;
  /** Ciphertext followed by the 16-byte GCM tag. */
  readonly ciphertext: Buffer;
}

export interface Envelope {
  seal(identity: SealIdentity, plaintext: Buffer): Promise<SealedSecret>;
  open(identity: SealIdentity, sealed: SealedSecret): Promise<Buffer>;
  /** Re-wraps the data key under the provider's current key; the secret itself is never decrypted. */
  rewrap(identity: SealIdentity, sealed: SealedSecret): Promise<SealedSecret>;
  readonly cache: DataKeyCache;
  readonly keys: KeyProvider;
}

function context(identity: SealIdentity): EncryptionContext {
  return { tenant_id: identity.tenantId, connected_account_id: identity.connectedAccountId };
}

function aad(identity: SealIdentity): Buffer {
  return Buffer.from(
    `warden/credential/v1\u0000${identity.tenantId}\u0000${identity.connectedAccountId}`,
    'utf8',
  );
}

function cacheId(identity: SealIdentity, key: WrappedKey): string {
  return createHash('sha256')
    .update(key.keyId)
    .update('\u0000')
    .update(key.wrapped)
    .update('\u0000')
    .update(aad(identity))
    .digest('base64url');
}

/**
 * Envelope encryption of credentials: one KMS data key per credential, AES-256-GCM
 * with the row identity as additional data, so a ciphertext (or wrapped key) copied
 * to another row or tenant fails to open.
 */
export interface EnvelopeHooks {
  /**
   * A sealed secret did not open: moved to another row, tampered with, or wrapped under a key
   * that is gone. Called before the error is thrown, for the audit trail; must not throw.
   */
  readonly onIntegrityFailure?: (failure: {
    readonly identity: SealIdentity;
    readonly keyId: string;
    readonly reason: string;
  }) => void;
}

export function createEnvelope(
  keys: KeyProvider,
  cacheOptions: DataKeyCacheOptions,
  hooks: EnvelopeHooks = {},
): Envelope {
  const cache = new DataKeyCache(cacheOptions);
  // Concurrent cold opens of one credential share a single KMS call.
  const inflight = new Map<string, Promise<Buffer>>();

  async function dataKey(identity: SealIdentity, wrapped: WrappedKey): Promise<Buffer> {
    const id = cacheId(identity, wrapped);
    const cached = cache.get(id);
    if (cached) return cached;
    let pending = inflight.get(id);
    if (!pending) {
      pending = keys.decryptDataKey(wrapped, context(identity)).then((key) => {
        cache.set(id, key);
        return key;
      });
      inflight.set(id, pending);
      void pending.finally(() => inflight.delete(id)).catch(() => {});
    }
    return pending;
  }

  async function open(identity: SealIdentity, sealed: SealedSecret): Promise<Buffer> {
    if (sealed.ciphertext.length < TAG_BYTES || sealed.iv.length !== IV_BYTES) {
      throw new WardenError('integrity_failure', 'sealed credential is malformed');
    }
    const key = await dataKey(identity, { keyId: sealed.keyId, wrapped: sealed.wrappedKey });
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv);
    decipher.setAAD(aad(identity));
    decipher.setAuthTag(sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new WardenError(
        'integrity_failure',
        'sealed credential failed authentication (moved or tampered)',
      );
    }
  }

  return {
    cache,
    keys,
    async seal(identity, plaintext) {
      const generated = await keys.generateDataKey(context(identity));
      try {
        const iv = randomBytes(IV_BYTES);
        const cipher = createCipheriv('aes-256-gcm', generated.plaintext, iv);
        cipher.setAAD(aad(identity));
        const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
        cache.set(cacheId(identity, generated), generated.plaintext);
        return {
          keyProvider: keys.provider,
          keyId: generated.keyId,
          wrappedKey: generated.wrapped,
          iv,
          ciphertext,
        };
      } finally {
        generated.plaintext.fill(0);
      }
    },
    async open(identity, sealed) {
      try {
        return await open(identity, sealed);
      } catch (error) {
        if (error instanceof WardenError && error.code === 'integrity_failure') {
          hooks.onIntegrityFailure?.({ identity, keyId: sealed.keyId, reason: error.message });
        }
        throw error;
      }
    },
    async rewrap(identity, sealed) {
      const next = await keys.reEncryptDataKey(
        { keyId: sealed.keyId, wrapped: sealed.wrappedKey },
        context(identity),
      );
      return { ...sealed, keyProvider: keys.provider, keyId: next.keyId, wrappedKey: next.wrapped };
    },
  };
}
