import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '@warden/core';
import { createAwsKmsKeyProvider, createLocalKeyProvider } from '@warden/kms';
import { sealInFirstFormat, startFakeKms } from '@warden/testing';
import type { FakeKms } from '@warden/testing';
import { createEnvelope, sealIdentity } from './envelope.ts';

const alice = sealIdentity('credential', 'ten_a', 'ca_alice');
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
    await expect(env.open({ ...alice, id: 'ca_bob' }, sealed)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
    await expect(env.open({ ...alice, tenantId: 'ten_b' }, sealed)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  it('a ciphertext moved onto another row that has its own warm data key still fails (AAD)', async () => {
    const env = createEnvelope(localKeys(), { maxEntries: 10, ttlMs: 60_000 });
    const bob = sealIdentity('credential', 'ten_a', 'ca_bob');
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

  it('a secret sealed as one kind does not open as another kind with the same tenant and id', async () => {
    const env = createEnvelope(localKeys(), { maxEntries: 10, ttlMs: 60_000 });
    const sink = sealIdentity('siem_sink', 'ten_a', 'x_1');
    const sealed = await env.seal(sink, secret);
    expect(sealed.format).toBe(2);
    for (const kind of ['credential', 'webhook', 'sso_client_secret'] as const) {
      await expect(env.open({ ...sink, kind }, sealed)).rejects.toMatchObject({ code: 'integrity_failure' });
    }
    expect(await env.open(sink, sealed)).toEqual(secret);
  });

  it('opens secrets sealed in the first format, and reseal binds them by kind and id', async () => {
    const keys = localKeys();
    const env = createEnvelope(keys, { maxEntries: 0, ttlMs: 0 });
    const cases = [
      { identity: sealIdentity('credential', 'ten_a', 'ca_1'), legacyId: 'ca_1' },
      { identity: sealIdentity('webhook', 'ten_a', 'whk_1'), legacyId: 'whk_1' },
      { identity: sealIdentity('sso_client_secret', 'ten_a', 'ten_a'), legacyId: 'sso:ten_a' },
      { identity: sealIdentity('oauth_server_keys', 'system', 'v1'), legacyId: 'oauth_server_keys' },
    ];
    for (const { identity, legacyId } of cases) {
      const legacy = await sealInFirstFormat(keys, identity.tenantId, legacyId, secret);
      expect(await env.open(identity, legacy)).toEqual(secret);
      const resealed = await env.reseal(identity, legacy);
      expect(resealed.format).toBe(2);
      expect(resealed.wrappedKey.equals(legacy.wrappedKey)).toBe(false);
      expect(await env.open(identity, resealed)).toEqual(secret);
      // The first format's binding no longer opens the new seal, and the old one is kind-blind.
      await expect(env.open(identity, { ...resealed, format: 1 })).rejects.toMatchObject({
        code: 'integrity_failure',
      });
    }
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

      const bob = sealIdentity('credential', 'ten_a', 'ca_bob');
      kms.resetCalls();
      await expect(env.open(bob, sealed)).rejects.toMatchObject({ code: 'integrity_failure' });
      await expect(env.open(bob, sealed)).rejects.toMatchObject({ code: 'integrity_failure' });
      expect(kms.calls().Decrypt).toBe(2);
    });

    it('names the kind and id in the KMS encryption context', async () => {
      const keys = awsKeys();
      const env = createEnvelope(keys, { maxEntries: 0, ttlMs: 0 });
      const sink = sealIdentity('siem_sink', 'ten_a', 'snk_1');
      const sealed = await env.seal(sink, secret);
      const wrapped = { keyId: sealed.keyId, wrapped: sealed.wrappedKey };
      const key = await keys.decryptDataKey(wrapped, {
        tenant_id: 'ten_a',
        sealed_kind: 'siem_sink',
        sealed_id: 'snk_1',
      });
      expect(key.length).toBe(32);
      await expect(
        keys.decryptDataKey(wrapped, { tenant_id: 'ten_a', connected_account_id: 'snk_1' }),
      ).rejects.toBeTruthy();
      await expect(
        keys.decryptDataKey(wrapped, { tenant_id: 'ten_a', sealed_kind: 'webhook', sealed_id: 'snk_1' }),
      ).rejects.toBeTruthy();
    });

    it('evicts the least recently used key beyond maxEntries', async () => {
      const env = createEnvelope(awsKeys(), { maxEntries: 2, ttlMs: 60_000 });
      const ids = ['ca_1', 'ca_2', 'ca_3'].map((id) => sealIdentity('credential', 'ten_a', id));
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
