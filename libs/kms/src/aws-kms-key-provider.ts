import {
  DecryptCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { WardenError } from '@warden/core';
import { createKmsClient, kmsCall } from './aws-kms-client.ts';
import type { AwsKmsConnection } from './aws-kms-client.ts';
import type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './key-provider.ts';

export interface AwsKmsOptions extends AwsKmsConnection {
  /** Key id, ARN, alias name (`alias/warden`) or alias ARN of the key-encryption key. */
  keyId: string;
}

function bytes(value: Uint8Array | undefined, operation: string): Buffer {
  if (!value) throw new WardenError('unavailable', `KMS ${operation} returned no data`);
  return Buffer.from(value);
}

export function createAwsKmsKeyProvider(options: AwsKmsOptions): KeyProvider {
  const client = createKmsClient(options);
  let resolvedKeyArn: string | undefined;

  const send = <T>(operation: string, run: () => Promise<T>): Promise<T> =>
    kmsCall(operation, 'the data key', run);

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
    // KMS decides on every call whether a key may still decrypt: nothing is held here.
    reload(): void {},
  };
}
