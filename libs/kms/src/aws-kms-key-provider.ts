import {
  DecryptCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  KMSClient,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { WardenError } from '@warden/core';
import type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './key-provider.ts';

export interface AwsKmsOptions {
  /** Key id, ARN, alias name (`alias/warden`) or alias ARN of the key-encryption key. */
  keyId: string;
  region?: string;
  /** A KMS-compatible endpoint (tests, VPC endpoints). */
  endpoint?: string;
  /** Explicit credentials; otherwise the AWS SDK's default provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  maxAttempts?: number;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
}

/** Answers that mean "this wrap will never open with this key/context": not an outage. */
const INTEGRITY_ERRORS = new Set([
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'InvalidKeyUsageException',
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
]);

function mapError(operation: string, error: unknown): WardenError {
  const name = (error as { name?: unknown })?.name;
  if (typeof name === 'string' && INTEGRITY_ERRORS.has(name)) {
    return new WardenError('integrity_failure', `KMS ${operation} refused the data key (${name})`);
  }
  // Outage, throttling, access denied or network: a dependency failure. The SDK's own
  // message can include request ids and endpoints, but never key material.
  return new WardenError(
    'unavailable',
    `KMS ${operation} failed${typeof name === 'string' ? ` (${name})` : ''}; retry shortly`,
    { dependency: 'kms' },
    { cause: error },
  );
}

function bytes(value: Uint8Array | undefined, operation: string): Buffer {
  if (!value) throw new WardenError('unavailable', `KMS ${operation} returned no data`);
  return Buffer.from(value);
}

export function createAwsKmsKeyProvider(options: AwsKmsOptions): KeyProvider {
  const client = new KMSClient({
    ...(options.region ? { region: options.region } : {}),
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: {
      connectionTimeout: options.connectionTimeoutMs ?? 2_000,
      requestTimeout: options.requestTimeoutMs ?? 5_000,
    },
  });
  let resolvedKeyArn: string | undefined;

  async function send<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw mapError(operation, error);
    }
  }

  return {
    provider: 'aws',
    async generateDataKey(context: EncryptionContext): Promise<DataKey> {
      const out = await send('GenerateDataKey', () =>
        client.send(
          new GenerateDataKeyCommand({
            KeyId: options.keyId,
            KeySpec: 'AES_256',
            EncryptionContext: { ...context },
          }),
        ),
      );
      if (!out.KeyId) throw new WardenError('unavailable', 'KMS GenerateDataKey returned no key id');
      return {
        plaintext: bytes(out.Plaintext, 'GenerateDataKey'),
        wrapped: bytes(out.CiphertextBlob, 'GenerateDataKey'),
        keyId: out.KeyId,
      };
    },
    async decryptDataKey(key: WrappedKey, context: EncryptionContext): Promise<Buffer> {
      const out = await send('Decrypt', () =>
        client.send(
          new DecryptCommand({
            CiphertextBlob: key.wrapped,
            KeyId: key.keyId,
            EncryptionContext: { ...context },
          }),
        ),
      );
      return bytes(out.Plaintext, 'Decrypt');
    },
    async reEncryptDataKey(key: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
      const out = await send('ReEncrypt', () =>
        client.send(
          new ReEncryptCommand({
            CiphertextBlob: key.wrapped,
            SourceKeyId: key.keyId,
            SourceEncryptionContext: { ...context },
            DestinationKeyId: options.keyId,
            DestinationEncryptionContext: { ...context },
          }),
        ),
      );
      if (!out.KeyId) throw new WardenError('unavailable', 'KMS ReEncrypt returned no key id');
      return { wrapped: bytes(out.CiphertextBlob, 'ReEncrypt'), keyId: out.KeyId };
    },
    async currentKeyId(): Promise<string> {
      if (!resolvedKeyArn) {
        const out = await send('DescribeKey', () =>
          client.send(new DescribeKeyCommand({ KeyId: options.keyId })),
        );
        const arn = out.KeyMetadata?.Arn;
        if (!arn) throw new WardenError('unavailable', 'KMS DescribeKey returned no ARN');
        resolvedKeyArn = arn;
      }
      return resolvedKeyArn;
    },
    async ping(): Promise<void> {
      await send('DescribeKey', () => client.send(new DescribeKeyCommand({ KeyId: options.keyId })));
    },
  };
}
