import { sign, verify } from 'node:crypto';
import { existsSync } from 'node:fs';
import { WardenError } from '@warden/core';
import { loadOrCreateSigningKey, readKeyRing } from './local-key-file.ts';
import type { LocalSigningKey } from './local-key-file.ts';
import type { Signer } from './signer.ts';

/**
 * Ed25519 signatures with the key kept in the local key file (0600, beside the wrapping keys).
 * `create: false` (a verifier such as `warden audit verify`) never writes the file: without a
 * signing key there, every signature names an unknown key.
 */
export function createLocalSigner(options: { keyFile: string; create?: boolean }): Signer {
  let key: LocalSigningKey | null = null;

  function current(): LocalSigningKey {
    if (key) return key;
    if (options.create === false) {
      key = existsSync(options.keyFile) ? readKeyRing(options.keyFile).signingKey : null;
      if (!key)
        throw new WardenError(
          'unavailable',
          `the local key file ${options.keyFile} has no audit signing key`,
        );
    } else {
      key = loadOrCreateSigningKey(options.keyFile);
    }
    return key;
  }

  return {
    provider: 'local',
    async sign(message) {
      const k = current();
      return { keyId: k.keyId, algorithm: 'ED25519', signature: sign(null, message, k.privateKey) };
    },
    async verify(message, signature) {
      let k: LocalSigningKey;
      try {
        k = current();
      } catch {
        return 'unknown_key';
      }
      if (signature.keyId !== k.keyId || signature.algorithm !== 'ED25519') return 'unknown_key';
      return verify(null, message, k.publicKey, signature.signature) ? 'valid' : 'invalid';
    },
    async publicKey() {
      const k = current();
      return {
        keyId: k.keyId,
        algorithm: 'ED25519',
        publicKeyPem: k.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      };
    },
  };
}
