import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';
import { REPO_ROOT } from './test-support/paths.ts';

describe('CLOUDFLARE_SPEC_PATH', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const refusal = (specPath: string): string => {
    try {
      loadConfig({ DATA_DIR: dir, CLOUDFLARE_SPEC_PATH: specPath });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error(`accepted ${specPath}`);
  };

  it('is resolved to an absolute path when the file is readable', () => {
    const file = path.join(dir, 'spec.json');
    writeFileSync(file, '{}');
    const config = loadConfig({ DATA_DIR: dir, CLOUDFLARE_SPEC_PATH: path.relative(process.cwd(), file) });
    expect(config.cloudflare.specPath).toBe(file);
    expect(config.cloudflare.specUrl).toBeNull();
  });

  it('stops the configuration when it names nothing, or a directory', () => {
    const missing = path.join(dir, 'missing.json');
    expect(refusal(missing)).toBe(
      `invalid configuration:\n  CLOUDFLARE_SPEC_PATH: ${missing} does not exist; point it at a readable copy of the Cloudflare OpenAPI document (JSON), or unset it to fetch the document from CLOUDFLARE_SPEC_URL`,
    );
    expect(refusal(dir)).toMatch(/^invalid configuration:\n {2}CLOUDFLARE_SPEC_PATH: .* is not a file;/);
  });

  it('stops the configuration when the file is not readable', () => {
    const locked = path.join(dir, 'locked.json');
    writeFileSync(locked, '{}');
    chmodSync(locked, 0o000);
    if (process.getuid?.() !== 0) {
      expect(refusal(locked)).toMatch(/CLOUDFLARE_SPEC_PATH: .* is not readable by this process;/);
      return;
    }
    // root reads any file whatever its mode: ask from a process without the capabilities that
    // let it (setpriv, util-linux), as a service account would.
    const script = `
      import { loadConfig } from ${JSON.stringify(pathToFileURL(path.join(REPO_ROOT, 'services/connector/src/config.ts')).href)};
      try { loadConfig({ DATA_DIR: ${JSON.stringify(dir)}, CLOUDFLARE_SPEC_PATH: ${JSON.stringify(locked)} }); console.log('accepted'); }
      catch (error) { console.log(error.message); }`;
    const caps = '-dac_override,-dac_read_search';
    const result = spawnSync(
      'setpriv',
      [`--bounding-set=${caps}`, `--inh-caps=${caps}`, process.execPath, '--input-type=module', '-e', script],
      { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/CLOUDFLARE_SPEC_PATH: .* is not readable by this process;/);
  });

  it('stops `npm start` with one message naming the variable, before anything starts', () => {
    const result = spawnSync(process.execPath, ['--no-node-snapshot', 'services/connector/src/main.ts'], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        DATA_DIR: dir,
        CLOUDFLARE_SPEC_PATH: path.join(dir, 'nowhere.json'),
        PORT: '0',
      },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^warden: invalid configuration:\n {2}CLOUDFLARE_SPEC_PATH: .*nowhere\.json does not exist;/,
    );
    expect(result.stdout).toBe('');
  });
});

describe('audit proof settings', () => {
  it('reads the signing key, the previous ones, the checkpoint interval, the outcome grace and the drain', () => {
    const config = loadConfig({
      KMS_PROVIDER: 'aws',
      AWS_KMS_KEY_ID: 'alias/warden',
      AWS_KMS_SIGNING_KEY_ID: 'alias/warden-audit',
      AWS_KMS_SIGNING_PREVIOUS_KEY_IDS: 'arn:aws:kms:eu-west-1:1:key/a, arn:aws:kms:eu-west-1:1:key/b',
      AUDIT_CHECKPOINT_INTERVAL_SECONDS: '60',
      AUDIT_OUTCOME_GRACE_SECONDS: '5',
      SHUTDOWN_DRAIN_SECONDS: '3',
    });
    expect(config.kms).toMatchObject({
      signingKeyId: 'alias/warden-audit',
      previousSigningKeyIds: ['arn:aws:kms:eu-west-1:1:key/a', 'arn:aws:kms:eu-west-1:1:key/b'],
    });
    expect(config).toMatchObject({
      auditCheckpointIntervalMs: 60_000,
      auditOutcomeGraceMs: 5_000,
      shutdownDrainMs: 3_000,
    });
    expect(loadConfig({}).auditOutcomeGraceMs).toBeNull();
    expect(loadConfig({ KMS_PROVIDER: 'aws', AWS_KMS_KEY_ID: 'k' }).kms).toMatchObject({
      signingKeyId: null,
    });
  });

  it('refuses a drain the shutdown deadline could not hold', () => {
    expect(() => loadConfig({ SHUTDOWN_DRAIN_SECONDS: '30' })).toThrow(/SHUTDOWN_DRAIN_SECONDS/);
  });
});

describe('tail socket origins', () => {
  it("are Cloudflare's tail host over wss:// only, for Cloudflare's API", () => {
    expect(loadConfig({}).cloudflare.tailSocketOrigins).toEqual(['wss://tail.developers.workers.dev']);
    expect(
      loadConfig({ CLOUDFLARE_API_BASE: 'https://API.cloudflare.com/client/v4/' }).cloudflare
        .tailSocketOrigins,
    ).toEqual(['wss://tail.developers.workers.dev']);
  });

  it("add another API base's own host and port (ws:// only for an http:// one), nothing else", () => {
    expect(
      loadConfig({ CLOUDFLARE_API_BASE: 'http://127.0.0.1:8787/client/v4' }).cloudflare.tailSocketOrigins,
    ).toEqual(['wss://tail.developers.workers.dev', 'ws://127.0.0.1:8787']);
    expect(
      loadConfig({ CLOUDFLARE_API_BASE: 'https://cf-proxy.internal.example:443/client/v4' }).cloudflare
        .tailSocketOrigins,
    ).toEqual(['wss://tail.developers.workers.dev', 'wss://cf-proxy.internal.example']);
    // Plain http:// to Cloudflare's own host is not Cloudflare's API: no ws:// to its tail host.
    expect(
      loadConfig({ CLOUDFLARE_API_BASE: 'http://api.cloudflare.com/client/v4' }).cloudflare.tailSocketOrigins,
    ).toEqual(['wss://tail.developers.workers.dev', 'ws://api.cloudflare.com']);
  });
});

describe('R2 bytes in flight', () => {
  it('defaults to 64 MB for the process and 32 MB per tenant, and refuses bounds no object fits', () => {
    expect(loadConfig({}).cloudflare.r2BytesInFlight).toEqual({
      process: 64 * 1024 * 1024,
      tenant: 32 * 1024 * 1024,
      waitMs: 5_000,
    });
    expect(() => loadConfig({ R2_MAX_TENANT_BYTES_IN_FLIGHT: String(1024 * 1024) })).toThrow(
      /R2_MAX_TENANT_BYTES_IN_FLIGHT: must be at least R2_MAX_OBJECT_BYTES \(10485760\)/,
    );
    expect(() => loadConfig({ R2_MAX_BYTES_IN_FLIGHT: String(16 * 1024 * 1024) })).toThrow(
      /R2_MAX_BYTES_IN_FLIGHT: must be at least R2_MAX_TENANT_BYTES_IN_FLIGHT/,
    );
  });
});

describe('TRUST_PROXY', () => {
  it('is off by default; true trusts proxies on loopback and private networks, never every hop', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toEqual(['loopback', 'linklocal', 'uniquelocal']);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.10,::1,loopback' }).trustProxy).toEqual([
      '10.0.0.0/8',
      '192.168.1.10',
      '::1',
      'loopback',
    ]);
    expect(() => loadConfig({ TRUST_PROXY: 'everyone' })).toThrow(
      /TRUST_PROXY: "everyone" is not true, false/,
    );
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33' })).toThrow(/TRUST_PROXY: "10.0.0.0\/33"/);
  });
});

describe('SSO domain proof re-check', () => {
  it('looks proven domains up daily and lets them lapse after 72 hours by default; 0 turns it off', () => {
    expect(loadConfig({}).oauth.domainRecheck).toEqual({
      intervalMs: 24 * 3_600_000,
      lapseMs: 72 * 3_600_000,
    });
    expect(
      loadConfig({ SSO_DOMAIN_RECHECK_HOURS: '6', SSO_DOMAIN_LAPSE_HOURS: '12' }).oauth.domainRecheck,
    ).toEqual({ intervalMs: 6 * 3_600_000, lapseMs: 12 * 3_600_000 });
    expect(loadConfig({ SSO_DOMAIN_RECHECK_HOURS: '0' }).oauth.domainRecheck).toBeNull();
    expect(() => loadConfig({ SSO_DOMAIN_LAPSE_HOURS: '0' })).toThrow(/SSO_DOMAIN_LAPSE_HOURS/);
    expect(() => loadConfig({ SSO_DOMAIN_RECHECK_HOURS: 'daily' })).toThrow(/SSO_DOMAIN_RECHECK_HOURS/);
  });
});

describe('PUBLIC_URL', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-config-url-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is read in one spelling: scheme and host in lower case, no trailing slash (so https is seen as https)', () => {
    const read = (url: string) => loadConfig({ DATA_DIR: dir, PUBLIC_URL: url }).publicUrl;
    expect(read('HTTPS://Warden.Example.TEST/')).toBe('https://warden.example.test');
    expect(read('https://warden.example.test:8443/warden//')).toBe('https://warden.example.test:8443/warden');
    expect(read('http://127.0.0.1:3000')).toBe('http://127.0.0.1:3000');
  });

  it('is refused at start-up unless it is http or https, with a message naming it', () => {
    for (const url of ['htps://warden.example.test', 'javascript:alert(1)', 'ftp://warden.example.test']) {
      expect(() => loadConfig({ DATA_DIR: dir, PUBLIC_URL: url }), url).toThrow(ConfigError);
      expect(() => loadConfig({ DATA_DIR: dir, PUBLIC_URL: url }), url).toThrow(/PUBLIC_URL.*http/);
    }
  });
});
