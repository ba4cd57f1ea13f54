import { mkdtempSync, readFileSync, statSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addKeyVersion, removeKeyVersion } from './local-key-file.ts';
import { createLocalKeyProvider } from './local-key-provider.ts';

const context = { tenant_id: 'ten_a', connected_account_id: 'ca_1' };

function keyFile(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'warden-kms-')), 'keys', 'warden-keys.json');
}

describe('local key provider', () => {
  it('creates the key file with mode 0600 on first start and round-trips a data key', async () => {
    const file = keyFile();
    const keys = createLocalKeyProvider({ keyFile: file });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const dk = await keys.generateDataKey(context);
    expect(dk.plaintext).toHaveLength(32);
    expect(dk.keyId).toBe('local:v1');
    expect(dk.wrapped.includes(dk.plaintext)).toBe(false);
    expect(await keys.decryptDataKey({ wrapped: dk.wrapped, keyId: dk.keyId }, context)).toEqual(
      dk.plaintext,
    );
    expect(readFileSync(file, 'utf8')).not.toContain(dk.plaintext.toString('base64'));
  });

  it('refuses to unwrap under another encryption context or with a tampered wrap', async () => {
    const keys = createLocalKeyProvider({ keyFile: keyFile() });
    const dk = await keys.generateDataKey(context);
    await expect(
      keys.decryptDataKey(
        { wrapped: dk.wrapped, keyId: dk.keyId },
        { ...context, connected_account_id: 'ca_2' },
      ),
    ).rejects.toMatchObject({ code: 'integrity_failure' });
    await expect(
      keys.decryptDataKey({ wrapped: dk.wrapped, keyId: dk.keyId }, { ...context, tenant_id: 'ten_b' }),
    ).rejects.toMatchObject({ code: 'integrity_failure' });
    const tampered = Buffer.from(dk.wrapped);
    tampered[20] = (tampered[20] ?? 0) ^ 1;
    await expect(keys.decryptDataKey({ wrapped: tampered, keyId: dk.keyId }, context)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  it('rotates to a new version, re-wraps, and still opens after the old version is retired', async () => {
    const file = keyFile();
    const keys = createLocalKeyProvider({ keyFile: file });
    const dk = await keys.generateDataKey(context);
    addKeyVersion(file);
    expect(await keys.currentKeyId()).toBe('local:v2');
    const rewrapped = await keys.reEncryptDataKey({ wrapped: dk.wrapped, keyId: dk.keyId }, context);
    expect(rewrapped.keyId).toBe('local:v2');
    removeKeyVersion(file, 1);
    // A fresh process (as after a restart) only has v2.
    const restarted = createLocalKeyProvider({ keyFile: file });
    expect(await restarted.decryptDataKey(rewrapped, context)).toEqual(dk.plaintext);
    await expect(
      restarted.decryptDataKey({ wrapped: dk.wrapped, keyId: dk.keyId }, context),
    ).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  it('picks up a version added by another process', async () => {
    const file = keyFile();
    const running = createLocalKeyProvider({ keyFile: file });
    addKeyVersion(file);
    const cli = createLocalKeyProvider({ keyFile: file });
    const dk = await cli.generateDataKey(context);
    expect(dk.keyId).toBe('local:v2');
    expect(await running.decryptDataKey(dk, context)).toEqual(dk.plaintext);
  });

  it('refuses a key file readable by others and will not retire the current version', () => {
    const file = keyFile();
    createLocalKeyProvider({ keyFile: file });
    expect(() => removeKeyVersion(file, 1)).toThrow(/current/);
    chmodSync(file, 0o644);
    expect(() => createLocalKeyProvider({ keyFile: file })).toThrow(/chmod 600/);
  });
});
