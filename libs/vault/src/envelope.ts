import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { WardenError } from '@warden/core';
import type { EncryptionContext, KeyProvider, WrappedKey } from '@warden/kms';
import { DataKeyCache } from './data-key-cache.ts';
import type { DataKeyCacheOptions } from './data-key-cache.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** What a sealed secret is. Named in its KMS encryption context and its AAD. */
export type SealedKind =
  'credential' | 'r2_access_key' | 'siem_sink' | 'webhook' | 'sso_client_secret' | 'oauth_server_keys';

/**
 * The row a sealed secret belongs to: its kind, its tenant (`system` for the deployment's own)
 * and its id. It is both the KMS encryption context and the GCM AAD, so a ciphertext (or a
 * wrapped key) copied to another row, tenant or kind does not open.
 */
export interface SealIdentity {
  readonly tenantId: string;
  readonly kind: SealedKind;
  readonly id: string;
}

/** The tenant the deployment's own secrets (not any tenant's) are sealed to. */
export const SYSTEM_TENANT = 'system';

/** The identity a secret of `kind` is sealed to: the one constructor every sealed table uses. */
export function sealIdentity(kind: SealedKind, tenantId: string, id: string): SealIdentity {
  return { kind, tenantId, id };
}

/**
 * How a secret is bound to its row. 1: the first format, which named every kind a connected
 * account (`connected_account_id` in the KMS context); 2: by kind and id. New seals are 2;
 * `keys rotate` re-seals 1 (see `reseal`).
 */
export type SealFormat = 1 | 2;
export const CURRENT_SEAL_FORMAT: SealFormat = 2;

export interface SealedSecret {
  readonly keyProvider: string;
  readonly keyId: string;
  readonly wrappedKey: Buffer;
  readonly iv: Buffer;
  /** Ciphertext followed by the 16-byte GCM tag. */
  readonly ciphertext: Buffer;
  readonly format: SealFormat;
}

/** The columns every sealed table stores a secret in: the one mapping both ways. */
export interface SealedSecretColumns {
  readonly key_provider: string;
  readonly key_id: string;
  readonly wrapped_key: Uint8Array;
  readonly iv: Uint8Array;
  readonly ciphertext: Uint8Array;
  readonly seal_format: number;
}

export function sealedColumns(sealed: SealedSecret): SealedSecretColumns {
  return {
    key_provider: sealed.keyProvider,
    key_id: sealed.keyId,
    wrapped_key: sealed.wrappedKey,
    iv: sealed.iv,
    ciphertext: sealed.ciphertext,
    seal_format: sealed.format,
  };
}

/** A stored secret from its columns; null when the row holds none (sinks without a secret). */
export function sealedFromColumns(row: {
  readonly key_provider: string | null;
  readonly key_id: string | null;
  readonly wrapped_key: Uint8Array | null;
  readonly iv: Uint8Array | null;
  readonly ciphertext: Uint8Array | null;
  readonly seal_format: number;
}): SealedSecret | null {
  if (!row.key_provider || !row.key_id || !row.wrapped_key || !row.iv || !row.ciphertext) return null;
  return {
    keyProvider: row.key_provider,
    keyId: row.key_id,
    wrappedKey: Buffer.from(row.wrapped_key),
    iv: Buffer.from(row.iv),
    ciphertext: Buffer.from(row.ciphertext),
    format: row.seal_format === 1 ? 1 : 2,
  };
}

export interface Envelope {
  seal(identity: SealIdentity, plaintext: Buffer): Promise<SealedSecret>;
  open(identity: SealIdentity, sealed: SealedSecret): Promise<Buffer>;
  /** Re-wraps the data key under the provider's current key; the secret itself is never decrypted. */
  rewrap(identity: SealIdentity, sealed: SealedSecret): Promise<SealedSecret>;
  /**
   * Opens a secret of an older format and seals it again in the current one (a new data key
   * under the current key-encryption key). The plaintext is wiped before this returns.
   */
  reseal(identity: SealIdentity, sealed: SealedSecret): Promise<SealedSecret>;
  readonly cache: DataKeyCache;
  readonly keys: KeyProvider;
}

/** The id format 1 bound: it named the SSO secret `sso:<tenant>` and the server keys by table. */
function legacyId(identity: SealIdentity): string {
  if (identity.kind === 'sso_client_secret') return `sso:${identity.tenantId}`;
  if (identity.kind === 'oauth_server_keys') return 'oauth_server_keys';
  return identity.id;
}

function context(identity: SealIdentity, format: SealFormat): EncryptionContext {
  if (format === 1) return { tenant_id: identity.tenantId, connected_account_id: legacyId(identity) };
  return { tenant_id: identity.tenantId, sealed_kind: identity.kind, sealed_id: identity.id };
}

function aad(identity: SealIdentity, format: SealFormat): Buffer {
  const text =
    format === 1
      ? `warden/credential/v1\u0000${identity.tenantId}\u0000${legacyId(identity)}`
      : `warden/sealed/v2\u0000${identity.kind}\u0000${identity.tenantId}\u0000${identity.id}`;
  return Buffer.from(text, 'utf8');
}

function cacheId(identity: SealIdentity, format: SealFormat, key: WrappedKey): string {
  return createHash('sha256')
    .update(key.keyId)
    .update('\u0000')
    .update(key.wrapped)
    .update('\u0000')
    .update(aad(identity, format))
    .digest('base64url');
}

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

/**
 * Envelope encryption of secrets: one KMS data key per secret, AES-256-GCM with the row identity
 * as additional data, so a ciphertext (or wrapped key) copied to another row, tenant or kind fails
 * to open.
 */
export function createEnvelope(
  keys: KeyProvider,
  cacheOptions: DataKeyCacheOptions,
  hooks: EnvelopeHooks = {},
): Envelope {
  const cache = new DataKeyCache(cacheOptions);
  // Concurrent cold opens of one credential share a single KMS call.
  const inflight = new Map<string, Promise<Buffer>>();

  async function dataKey(identity: SealIdentity, format: SealFormat, wrapped: WrappedKey): Promise<Buffer> {
    const id = cacheId(identity, format, wrapped);
    const cached = cache.get(id);
    if (cached) return cached;
    let pending = inflight.get(id);
    if (!pending) {
      pending = keys.decryptDataKey(wrapped, context(identity, format)).then((key) => {
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
    const key = await dataKey(identity, sealed.format, { keyId: sealed.keyId, wrapped: sealed.wrappedKey });
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv);
    decipher.setAAD(aad(identity, sealed.format));
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

  async function seal(identity: SealIdentity, plaintext: Buffer): Promise<SealedSecret> {
    const format = CURRENT_SEAL_FORMAT;
    const generated = await keys.generateDataKey(context(identity, format));
    try {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', generated.plaintext, iv);
      cipher.setAAD(aad(identity, format));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
      cache.set(cacheId(identity, format, generated), generated.plaintext);
      return {
        keyProvider: keys.provider,
        keyId: generated.keyId,
        wrappedKey: generated.wrapped,
        iv,
        ciphertext,
        format,
      };
    } finally {
      generated.plaintext.fill(0);
    }
  }

  async function audited(identity: SealIdentity, sealed: SealedSecret): Promise<Buffer> {
    try {
      return await open(identity, sealed);
    } catch (error) {
      if (error instanceof WardenError && error.code === 'integrity_failure') {
        hooks.onIntegrityFailure?.({ identity, keyId: sealed.keyId, reason: error.message });
      }
      throw error;
    }
  }

  return {
    cache,
    keys,
    seal,
    open: audited,
    async reseal(identity, sealed) {
      const plaintext = await audited(identity, sealed);
      try {
        return await seal(identity, plaintext);
      } finally {
        plaintext.fill(0);
      }
    },
    async rewrap(identity, sealed) {
      const next = await keys.reEncryptDataKey(
        { keyId: sealed.keyId, wrapped: sealed.wrappedKey },
        context(identity, sealed.format),
      );
      return { ...sealed, keyProvider: keys.provider, keyId: next.keyId, wrappedKey: next.wrapped };
    },
  };
}
