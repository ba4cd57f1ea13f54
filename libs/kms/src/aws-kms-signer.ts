import { createPublicKey, constants, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { GetPublicKeyCommand, SignCommand } from '@aws-sdk/client-kms';
import type { SigningAlgorithmSpec } from '@aws-sdk/client-kms';
import { WardenError } from '@warden/core';
import { createKmsClient, kmsCall } from './aws-kms-client.ts';
import type { AwsKmsConnection } from './aws-kms-client.ts';
import type { SignatureAlgorithm, Signer } from './signer.ts';

export interface AwsKmsSignerOptions extends AwsKmsConnection {
  /** An asymmetric SIGN_VERIFY key (ECC_NIST_P256, RSA_2048…4096 or ECC_NIST_EDWARDS25519): id, ARN or alias. */
  keyId: string;
  /** Keys that signed before this one (after a switch), still trusted for verification. */
  previousKeyIds?: readonly string[];
}

/** The algorithm Warden uses for each key spec KMS can sign with. */
function algorithmFor(keySpec: string | undefined): SignatureAlgorithm {
  if (keySpec === 'ECC_NIST_P256') return 'ECDSA_SHA_256';
  if (keySpec?.startsWith('RSA_')) return 'RSASSA_PSS_SHA_256';
  if (keySpec === 'ECC_NIST_EDWARDS25519') return 'ED25519_SHA_512';
  throw new WardenError(
    'internal',
    `the audit signing key has key spec ${keySpec ?? 'unknown'}; use an asymmetric SIGN_VERIFY key: ECC_NIST_P256, RSA_2048 (or larger) or ECC_NIST_EDWARDS25519`,
  );
}

interface PublicKeyInfo {
  readonly arn: string;
  readonly key: KeyObject;
  readonly algorithm: SignatureAlgorithm;
}

/** Checks a KMS signature locally with the key's public half, as AWS recommends for offline checks. */
function verifyLocally(info: PublicKeyInfo, message: Buffer, signature: Buffer): boolean {
  switch (info.algorithm) {
    case 'ECDSA_SHA_256':
      return verify('sha256', message, { key: info.key, dsaEncoding: 'der' }, signature);
    case 'RSASSA_PSS_SHA_256':
      return verify(
        'sha256',
        message,
        {
          key: info.key,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
        },
        signature,
      );
    case 'ED25519_SHA_512':
    case 'ED25519':
      return verify(null, message, info.key, signature);
  }
}

/**
 * Signs with an asymmetric AWS KMS key (`Sign`, message type RAW): the private key never leaves
 * KMS. Verification fetches the public key once per key (`GetPublicKey`) and checks locally.
 */
export function createAwsKmsSigner(options: AwsKmsSignerOptions): Signer {
  const client = createKmsClient(options);
  const publicKeys = new Map<string, Promise<PublicKeyInfo>>();

  function publicKeyOf(keyId: string): Promise<PublicKeyInfo> {
    let pending = publicKeys.get(keyId);
    if (!pending) {
      pending = kmsCall('GetPublicKey', 'the signing key', () =>
        client.send(new GetPublicKeyCommand({ KeyId: keyId })),
      ).then((out) => {
        if (!out.PublicKey || !out.KeyId)
          throw new WardenError('unavailable', 'KMS GetPublicKey returned no key');
        if (out.KeyUsage && out.KeyUsage !== 'SIGN_VERIFY') {
          throw new WardenError('internal', `the audit signing key ${out.KeyId} is not a SIGN_VERIFY key`);
        }
        return {
          arn: out.KeyId,
          key: createPublicKey({ key: Buffer.from(out.PublicKey), format: 'der', type: 'spki' }),
          algorithm: algorithmFor(out.KeySpec),
        };
      });
      // A failure is not remembered: the next call asks again.
      pending.catch(() => publicKeys.delete(keyId));
      publicKeys.set(keyId, pending);
    }
    return pending;
  }

  /** Only signatures by the configured keys count: any KMS key could sign, only these are ours. */
  async function trusted(arn: string): Promise<boolean> {
    for (const keyId of [options.keyId, ...(options.previousKeyIds ?? [])]) {
      if ((await publicKeyOf(keyId)).arn === arn) return true;
    }
    return false;
  }

  return {
    provider: 'aws',
    async sign(message) {
      const info = await publicKeyOf(options.keyId);
      const out = await kmsCall('Sign', 'the signing key', () =>
        client.send(
          new SignCommand({
            KeyId: options.keyId,
            Message: message,
            MessageType: 'RAW',
            SigningAlgorithm: info.algorithm as SigningAlgorithmSpec,
          }),
        ),
      );
      if (!out.Signature || !out.KeyId)
        throw new WardenError('unavailable', 'KMS Sign returned no signature');
      return { keyId: out.KeyId, algorithm: info.algorithm, signature: Buffer.from(out.Signature) };
    },
    async verify(message, signature) {
      let info: PublicKeyInfo;
      try {
        info = await publicKeyOf(signature.keyId);
      } catch (error) {
        // A key KMS does not know (or no longer lets anyone use) proves nothing either way.
        if (error instanceof WardenError && error.code === 'integrity_failure') return 'unknown_key';
        throw error;
      }
      if (!(await trusted(info.arn))) return 'unknown_key';
      if (info.algorithm !== signature.algorithm) return 'invalid';
      return verifyLocally(info, message, signature.signature) ? 'valid' : 'invalid';
    },
    async publicKey() {
      const info = await publicKeyOf(options.keyId);
      return {
        keyId: info.arn,
        algorithm: info.algorithm,
        publicKeyPem: info.key.export({ type: 'spki', format: 'pem' }).toString(),
      };
    },
  };
}
