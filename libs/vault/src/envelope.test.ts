import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '@warden/core';
import { createAwsKmsKeyProvider, createLocalKeyProvider } from '@warden/kms';
import { startFakeKms } from '@warden/testing';
import type { FakeKms } from '@warden/testing';
import { createEnvelope } from './envelope.ts';

const alice = { tenantId: 'ten_a', connectedAccountId: 'ca_alice' };
const secret = Buffer.from('{"type":"api_token","apiToken":"example-not-a-real-token-000000000000"}');

function localKeys() {
  return createLocalKeyProvider({
    keyFile: path.join(mkdtempSync(path.join(tmpdir(), 'warden-env-')), 'k.json'),
  });
}

describe('envelope encryption', () => {
  it('seals and opens; the ciphertext does not contain the secret', async () => {
    const env = createEnvelope(localKeys(), { maxEntries: 10, ttlMs: 60_000 });
    const sealed = await env.seal(alice, secret);
    expect(sealed.ciphertext.includes(secret)).toBe(false);
    expect(sealed.ciphertext.length).toBe(secret.length + 16);
    expect(await env.open(alice, sealed)).toEqual(secret);
  });

  it('a ciphertext moved to another row or tenant fails to open, even with its wrapped key', async () => {
    const env = createEnvelope(localKeys(), { maxEntries: 0, ttlMs: 0 });
    const sealed = await env.seal(alice, secret);
    await expect(env.open({ ...alice, connectedAccountId: 'ca_bob' }, sealed)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
    await expect(env.open({ ...alice, tenantId: 'ten_b' }, sealed)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  it('a ciphertext moved onto another row that has its own warm data key still fails (AAD)', async () => {
    const env = createEnvelope(localKeys(), { maxEntries: 10, ttlMs: 60_000 });
    const bob = { tenantId: 'ten_a', connectedAccountId: 'ca_bob' };
    const sealedAlice = await env.seal(alice, secret);
    const sealedBob = await env.seal(bob, Buffer.from('bob'));
    await expect(
      env.open(bob, { ...sealedBob, iv: sealedAlice.iv, ciphertext: sealedAlice.ciphertext }),
    ).rejects.toMatchObject({ code: 'integrity_failure' });
  });

  it('tampered ciphertext, iv or tag fails', async () => {
    const env = createEnvelope(localKeys(), { maxEntries: 10, ttlMs: 60_000 });
    const sealed = await env.seal(alice, secret);
    for (const field of ['ciphertext', 'iv'] as const) {
      const copy = Buffer.from(sealed[field]);
      copy[0] = (copy[0] ?? 0) ^ 0x80;
      await expect(env.open(alice, { ...sealed, [field]: copy })).rejects.toMatchObject({
        code: 'integrity_failure',
      });
    }
    const tag = Buffer.from(sealed.ciphertext);
    tag[tag.length - 1] = (tag[tag.length - 1] ?? 0) ^ 1;
    await expect(env.open(alice, { ...sealed, ciphertext: tag })).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  describe('data key cache with AWS KMS', () => {
    let kms: FakeKms;
    beforeAll(async () => {
      kms = await startFakeKms();
    });
    afterAll(async () => {
      await kms.close();
    });
    function awsKeys() {
      const key = kms.createKey();
      return createAwsKmsKeyProvider({
        keyId: key.arn,
        region: kms.region,
        endpoint: kms.endpoint,
        credentials: { accessKeyId: 'AKIDTESTFAKE', secretAccessKey: 'fake' },
        maxAttempts: 1,
      });
    }

    it('serves warm opens from the cache and calls KMS again after the TTL', async () => {
      const clock = new ManualClock();
      const env = createEnvelope(awsKeys(), { maxEntries: 10, ttlMs: 1_000, clock });
      const sealed = await env.seal(alice, secret);
      kms.resetCalls();
      for (let i = 0; i < 5; i++) expect(await env.open(alice, sealed)).toEqual(secret);
      expect(kms.calls().Decrypt ?? 0).toBe(0);
      clock.advance(1_001);
      await env.open(alice, sealed);
      expect(kms.calls().Decrypt).toBe(1);
    });

    it('shares one KMS call among concurrent cold opens, and never caches a failed unwrap', async () => {
      const env = createEnvelope(awsKeys(), { maxEntries: 10, ttlMs: 60_000 });
      const sealed = await env.seal(alice, secret);
      env.cache.clear();
      kms.resetCalls();
      const opened = await Promise.all(Array.from({ length: 10 }, () => env.open(alice, sealed)));
      expect(opened.every((b) => b.equals(secret))).toBe(true);
      expect(kms.calls().Decrypt).toBe(1);

      const bob = { tenantId: 'ten_a', connectedAccountId: 'ca_bob' };
      kms.resetCalls();
      await expect(env.open(bob, sealed)).rejects.toMatchObject({ code: 'integrity_failure' });
      await expect(env.open(bob, sealed)).rejects.toMatchObject({ code: 'integrity_failure' });
      expect(kms.calls().Decrypt).toBe(2);
    });

    it('evicts the least recently used key beyond maxEntries', async () => {
      const env = createEnvelope(awsKeys(), { maxEntries: 2, ttlMs: 60_000 });
      const ids = ['ca_1', 'ca_2', 'ca_3'].map((id) => ({ tenantId: 'ten_a', connectedAccountId: id }));
      const sealed = await Promise.all(ids.map((id) => env.seal(id, secret)));
      expect(env.cache.size).toBe(2);
      kms.resetCalls();
      await env.open(ids[0]!, sealed[0]!);
      expect(kms.calls().Decrypt).toBe(1);
    });

    it('fails with unavailable while KMS is down, and opens again once it is back', async () => {
      const env = createEnvelope(awsKeys(), { maxEntries: 10, ttlMs: 60_000 });
      const sealed = await env.seal(alice, secret);
      env.cache.clear();
      kms.setDown('error');
      try {
        await expect(env.open(alice, sealed)).rejects.toMatchObject({ code: 'unavailable' });
      } finally {
        kms.setDown(false);
      }
      expect(await env.open(alice, sealed)).toEqual(secret);
    });
  });
});
