/**
 * Envelope encryption: every credential gets its own data key; a KeyProvider wraps
 * (encrypts) that data key under a key-encryption key it never reveals, binding the
 * wrap to an encryption context so a wrapped key only opens for the row it was made for.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

export interface DataKey {
  /** 32 bytes for AES-256. The caller zeroes it when done. */
  readonly plaintext: Buffer;
  readonly wrapped: Buffer;
  /** The wrapping key: `local:v3` or a KMS key ARN. Stored beside the wrapped key. */
  readonly keyId: string;
}

export interface WrappedKey {
  readonly wrapped: Buffer;
  readonly keyId: string;
}

export interface KeyProvider {
  readonly provider: 'local' | 'aws';
  generateDataKey(context: EncryptionContext): Promise<DataKey>;
  /** Throws WardenError `integrity_failure` when the wrap or context does not match, `unavailable` on outage. */
  decryptDataKey(key: WrappedKey, context: EncryptionContext): Promise<Buffer>;
  /** Re-wraps under the current key without the caller ever seeing the data key. */
  reEncryptDataKey(key: WrappedKey, context: EncryptionContext): Promise<WrappedKey>;
  /** The canonical id new data keys are wrapped with (resolves aliases). */
  currentKeyId(): Promise<string>;
  /** Readiness: throws `unavailable` when the key service cannot be used. */
  ping(): Promise<void>;
  /**
   * A key was retired elsewhere (`warden keys retire` in another process): forget what this
   * process holds of keys that are gone. The local key file is read again; KMS keeps no state.
   */
  reload(): void;
}

/** Canonical byte form of a context, used as AES-GCM additional data by the local provider. */
export function canonicalContext(context: EncryptionContext): Buffer {
  const sorted = Object.keys(context)
    .sort()
    .map((k) => [k, context[k]]);
  return Buffer.from(JSON.stringify(sorted), 'utf8');
}
