import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeKms } from '@warden/testing';
import type { FakeKms } from '@warden/testing';
import { createAwsKmsKeyProvider } from './aws-kms-key-provider.ts';

const context = { tenant_id: 'ten_a', connected_account_id: 'ca_1' };
const credentials = { accessKeyId: 'AKIDTESTFAKE', secretAccessKey: 'fake-secret-for-sigv4' };

describe('AWS KMS key provider (real @aws-sdk/client-kms against the fake endpoint)', () => {
  let kms: FakeKms;
  beforeAll(async () => {
    kms = await startFakeKms();
  });
  afterAll(async () => {
    await kms.close();
  });

  function provider(keyId: string) {
    return createAwsKmsKeyProvider({
      keyId,
      region: kms.region,
      endpoint: kms.endpoint,
      credentials,
      maxAttempts: 1,
    });
  }

  it('generates and decrypts a data key bound to the encryption context', async () => {
    const key = kms.createKey();
    const keys = provider(key.arn);
    const dk = await keys.generateDataKey(context);
    expect(dk.keyId).toBe(key.arn);
    expect(await keys.decryptDataKey(dk, context)).toEqual(dk.plaintext);
    await expect(keys.decryptDataKey(dk, { ...context, tenant_id: 'ten_b' })).rejects.toMatchObject({
      code: 'integrity_failure',
      message: expect.stringContaining('InvalidCiphertextException'),
    });
    expect(kms.calls()).toMatchObject({ GenerateDataKey: 1, Decrypt: 2 });
  });

  it('re-encrypts to the key an alias now points at; the old key can then be disabled', async () => {
    const oldKey = kms.createKey({ alias: 'alias/rotate-test' });
    const keys = provider('alias/rotate-test');
    const dk = await keys.generateDataKey(context);
    expect(dk.keyId).toBe(oldKey.arn);

    const newKey = kms.createKey();
    kms.updateAlias('alias/rotate-test', newKey.keyId);
    const afterSwitch = provider('alias/rotate-test');
    expect(await afterSwitch.currentKeyId()).toBe(newKey.arn);
    const rewrapped = await afterSwitch.reEncryptDataKey(dk, context);
    expect(rewrapped.keyId).toBe(newKey.arn);

    kms.disableKey(oldKey.keyId);
    expect(await afterSwitch.decryptDataKey(rewrapped, context)).toEqual(dk.plaintext);
    await expect(afterSwitch.decryptDataKey(dk, context)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  it('reports an outage as unavailable, not as a bad ciphertext', async () => {
    const key = kms.createKey();
    const keys = provider(key.arn);
    const dk = await keys.generateDataKey(context);
    kms.setDown('error');
    try {
      await expect(keys.decryptDataKey(dk, context)).rejects.toMatchObject({ code: 'unavailable' });
      await expect(keys.ping()).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      kms.setDown(false);
    }
    kms.setDown('drop');
    try {
      await expect(keys.generateDataKey(context)).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      kms.setDown(false);
    }
  });

  it('rejects unsigned requests like AWS does', async () => {
    const res = await fetch(kms.endpoint, {
      method: 'POST',
      headers: { 'x-amz-target': 'TrentService.DescribeKey', 'content-type': 'application/x-amz-json-1.1' },
      body: '{}',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ __type: 'MissingAuthenticationTokenException' });
  });
});
