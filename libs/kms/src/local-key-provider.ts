import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { WardenError } from '@warden/core';
import type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './key-provider.ts';
import { canonicalContext } from './key-provider.ts';
import { loadOrCreateKeyRing, readKeyRing } from './local-key-file.ts';
import type { LocalKeyRing } from './local-key-file.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_PATTERN = /^local:v(\d+)$/;

function keyIdOf(version: number): string {
  return `local:v${version}`;
}

function integrity(message: string): WardenError {
  return new WardenError('integrity_failure', message);
}

/**
 * Wraps data keys with AES-256-GCM under a versioned key from a 0600 key file; the
 * encryption context is the additional authenticated data, as with AWS KMS. The file
 * is re-read when a wrap names a version this process has not seen (a rotation by
 * `warden keys rotate` in another process).
 */
export function createLocalKeyProvider(options: { keyFile: string }): KeyProvider {
  let ring: LocalKeyRing = loadOrCreateKeyRing(options.keyFile);

  function keyFor(version: number): Buffer {
    let entry = ring.versions.get(version);
    if (!entry) {
      ring = readKeyRing(options.keyFile);
      entry = ring.versions.get(version);
    }
    if (!entry) throw integrity(`wrapping key ${keyIdOf(version)} is not in the key file (retired?)`);
    return entry.key;
  }

  function wrap(dataKey: Buffer, version: number, context: EncryptionContext): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', keyFor(version), iv);
    cipher.setAAD(canonicalContext(context));
    return Buffer.concat([iv, cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]);
  }

  function unwrap(key: WrappedKey, context: EncryptionContext): Buffer {
    const match = KEY_ID_PATTERN.exec(key.keyId);
    if (!match) throw integrity(`key id ${key.keyId} is not a local key`);
    if (key.wrapped.length !== IV_BYTES + 32 + TAG_BYTES)
      throw integrity('wrapped data key has the wrong length');
    const decipher = createDecipheriv(
      'aes-256-gcm',
      keyFor(Number(match[1])),
      key.wrapped.subarray(0, IV_BYTES),
    );
    decipher.setAAD(canonicalContext(context));
    decipher.setAuthTag(key.wrapped.subarray(key.wrapped.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(key.wrapped.subarray(IV_BYTES, key.wrapped.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw integrity('data key failed authentication (wrong row, tenant or tampered)');
    }
  }

  return {
    provider: 'local',
    async generateDataKey(context: EncryptionContext): Promise<DataKey> {
      const plaintext = randomBytes(32);
      return { plaintext, wrapped: wrap(plaintext, ring.current, context), keyId: keyIdOf(ring.current) };
    },
    async decryptDataKey(key: WrappedKey, context: EncryptionContext): Promise<Buffer> {
      return unwrap(key, context);
    },
    async reEncryptDataKey(key: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
      ring = readKeyRing(options.keyFile);
      const plaintext = unwrap(key, context);
      try {
        return { wrapped: wrap(plaintext, ring.current, context), keyId: keyIdOf(ring.current) };
      } finally {
        plaintext.fill(0);
      }
    },
    async currentKeyId(): Promise<string> {
      ring = readKeyRing(options.keyFile);
      return keyIdOf(ring.current);
    },
    async ping(): Promise<void> {
      if (!ring.versions.has(ring.current))
        throw new WardenError('unavailable', 'local key file has no current key');
    },
    reload(): void {
      ring = readKeyRing(options.keyFile);
    },
  };
}
