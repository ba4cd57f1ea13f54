import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetPublicKeyCommand, SignCommand, VerifyCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeKms } from '@warden/testing';
import type { FakeKms, FakeKmsKeySpec } from '@warden/testing';
import { createKmsClient } from './aws-kms-client.ts';
import { createAwsKmsSigner } from './aws-kms-signer.ts';
import { addKeyVersion, readKeyRing } from './local-key-file.ts';
import { createLocalKeyProvider } from './local-key-provider.ts';
import { createLocalSigner } from './local-signer.ts';

const credentials = { accessKeyId: 'AKIDTESTFAKE', secretAccessKey: 'fake-secret-for-sigv4' };
const message = Buffer.from('warden-audit-checkpoint-v1 3f1c…');

function keyFile(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'warden-signer-')), 'warden-keys.json');
}

describe('local audit signer (Ed25519 in the key file)', () => {
  it('creates the signing key on first use beside the wrapping keys, 0600, and verifies its signatures', async () => {
    const file = keyFile();
    const keys = createLocalKeyProvider({ keyFile: file });
    const wrapped = await keys.generateDataKey({ tenant_id: 't' });
    expect(readKeyRing(file).signingKey).toBeNull();
    const signer = createLocalSigner({ keyFile: file });
    const signature = await signer.sign(message);
    expect(signature).toMatchObject({
      algorithm: 'ED25519',
      keyId: expect.stringMatching(/^local-ed25519:[0-9a-f]{16}$/),
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // The wrapping key is untouched: data keys still open.
    expect(await keys.decryptDataKey(wrapped, { tenant_id: 't' })).toEqual(wrapped.plaintext);
    expect(await signer.verify(message, signature)).toBe('valid');
    expect(await signer.verify(Buffer.from('another message'), signature)).toBe('invalid');
    const flipped = Buffer.from(signature.signature);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    expect(await signer.verify(message, { ...signature, signature: flipped })).toBe('invalid');
    // Another process (a replica, the CLI) reads the same key; a rotation keeps it.
    addKeyVersion(file);
    const reader = createLocalSigner({ keyFile: file, create: false });
    expect(await reader.verify(message, signature)).toBe('valid');
    expect((await reader.publicKey()).keyId).toBe(signature.keyId);
    expect(readFileSync(file, 'utf8')).toContain('"signing_key"');
  });

  it('a verifier never creates a key, and a signature by another key file is unknown, not valid', async () => {
    const file = keyFile();
    createLocalKeyProvider({ keyFile: file });
    const reader = createLocalSigner({ keyFile: file, create: false });
    const other = await createLocalSigner({ keyFile: keyFile() }).sign(message);
    expect(await reader.verify(message, other)).toBe('unknown_key');
    expect(readKeyRing(file).signingKey).toBeNull();
    await createLocalSigner({ keyFile: file }).sign(message);
    expect(await createLocalSigner({ keyFile: file, create: false }).verify(message, other)).toBe(
      'unknown_key',
    );
  });

  it('replicas signing for the first time together agree on one key', async () => {
    const file = keyFile();
    createLocalKeyProvider({ keyFile: file });
    const signatures = await Promise.all(
      Array.from({ length: 5 }, () => createLocalSigner({ keyFile: file }).sign(message)),
    );
    expect(new Set(signatures.map((s) => s.keyId)).size).toBe(1);
  });

  it('refuses a key file others can read, as for the wrapping keys', async () => {
    const file = keyFile();
    createLocalKeyProvider({ keyFile: file });
    chmodSync(file, 0o644);
    await expect(createLocalSigner({ keyFile: file }).publicKey()).rejects.toThrow(/chmod 600/);
  });
});

describe('AWS KMS audit signer (real @aws-sdk/client-kms against the fake endpoint)', () => {
  let kms: FakeKms;
  beforeAll(async () => {
    kms = await startFakeKms();
  });
  afterAll(async () => {
    await kms.close();
  });
  const connection = () => ({ region: kms.region, endpoint: kms.endpoint, credentials, maxAttempts: 1 });

  it.each<[FakeKmsKeySpec, string]>([
    ['ECC_NIST_P256', 'ECDSA_SHA_256'],
    ['RSA_2048', 'RSASSA_PSS_SHA_256'],
    ['ECC_NIST_EDWARDS25519', 'ED25519_SHA_512'],
  ])('signs with a %s key through an alias and verifies with its public key', async (keySpec, algorithm) => {
    const key = kms.createKey({ keySpec, alias: `alias/audit-${keySpec.toLowerCase()}` });
    const signer = createAwsKmsSigner({ ...connection(), keyId: `alias/audit-${keySpec.toLowerCase()}` });
    const signature = await signer.sign(message);
    expect(signature).toMatchObject({ keyId: key.arn, algorithm });
    expect(await signer.verify(message, signature)).toBe('valid');
    expect(await signer.verify(Buffer.from('edited'), signature)).toBe('invalid');
    // Another key, however valid its signatures, is not ours; a key switched away from still is.
    const next = kms.createKey({ keySpec });
    expect(await createAwsKmsSigner({ ...connection(), keyId: next.arn }).verify(message, signature)).toBe(
      'unknown_key',
    );
    const switched = createAwsKmsSigner({ ...connection(), keyId: next.arn, previousKeyIds: [key.arn] });
    expect(await switched.verify(message, signature)).toBe('valid');
    expect((await signer.publicKey()).publicKeyPem).toContain('BEGIN PUBLIC KEY');
  });

  it('the fake answers Sign, Verify and GetPublicKey as AWS does, with real cryptography', async () => {
    const key = kms.createKey({ keySpec: 'RSA_2048' });
    const client = createKmsClient(connection());
    const digest = createHash('sha256').update(message).digest();
    const signed = await client.send(
      new SignCommand({
        KeyId: key.keyId,
        Message: digest,
        MessageType: 'DIGEST',
        SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256',
      }),
    );
    // A DIGEST signature is the signature of the message it digests.
    const raw = await client.send(
      new VerifyCommand({
        KeyId: key.arn,
        Message: message,
        MessageType: 'RAW',
        Signature: signed.Signature,
        SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256',
      }),
    );
    expect(raw.SignatureValid).toBe(true);
    await expect(
      client.send(
        new VerifyCommand({
          KeyId: key.arn,
          Message: Buffer.from('other'),
          Signature: signed.Signature,
          SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256',
        }),
      ),
    ).rejects.toMatchObject({ name: 'KMSInvalidSignatureException' });
    await expect(
      client.send(new SignCommand({ KeyId: key.arn, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' })),
    ).rejects.toMatchObject({ name: 'InvalidKeyUsageException' });
    const symmetric = kms.createKey();
    await expect(
      client.send(
        new SignCommand({ KeyId: symmetric.arn, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' }),
      ),
    ).rejects.toMatchObject({ name: 'InvalidKeyUsageException' });
    await expect(client.send(new GetPublicKeyCommand({ KeyId: symmetric.arn }))).rejects.toMatchObject({
      name: 'UnsupportedOperationException',
    });
    const info = await client.send(new GetPublicKeyCommand({ KeyId: key.arn }));
    expect(info).toMatchObject({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    expect(info.SigningAlgorithms).toContain('RSASSA_PSS_SHA_256');
  });

  it('a symmetric key configured as the signing key is refused with the fix; an outage is unavailable', async () => {
    const symmetric = kms.createKey();
    await expect(
      createAwsKmsSigner({ ...connection(), keyId: symmetric.arn }).sign(message),
    ).rejects.toMatchObject({
      code: 'integrity_failure',
    });
    const key = kms.createKey({ keySpec: 'ECC_NIST_P256' });
    const signer = createAwsKmsSigner({ ...connection(), keyId: key.arn });
    const signature = await signer.sign(message);
    kms.setDown('error');
    try {
      await expect(signer.sign(message)).rejects.toMatchObject({ code: 'unavailable' });
      // The public key is cached: verification needs no KMS call.
      expect(await signer.verify(message, signature)).toBe('valid');
      await expect(
        createAwsKmsSigner({ ...connection(), keyId: key.arn }).verify(message, signature),
      ).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      kms.setDown(false);
    }
    kms.disableKey(key.keyId);
    expect(await createAwsKmsSigner({ ...connection(), keyId: key.arn }).verify(message, signature)).toBe(
      'unknown_key',
    );
  });
});
