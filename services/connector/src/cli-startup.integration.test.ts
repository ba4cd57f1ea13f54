import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';
import { REPO_ROOT } from './test-support/paths.ts';

const CLI = path.join(REPO_ROOT, 'services/connector/bin/warden.js');
const OPENAPI_DUMP = path.join(REPO_ROOT, 'services/connector/src/openapi-dump.ts');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Every process the command started, seen by polling /proc while it ran. */
  readonly children: readonly string[];
}

/** Direct children of `pid` with their command lines (empty once it has exited). */
function childrenOf(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map((child) => {
          try {
            return readFileSync(`/proc/${child}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
          } catch {
            return `pid ${child}`;
          }
        }),
    );
  } catch {
    return [];
  }
}

/** Runs `node <args>` with exactly `env` (plus PATH), watching for child processes meanwhile. */
function runNode(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'silent', ...env },
    });
    let stdout = '';
    let stderr = '';
    const seen = new Set<string>();
    const watch = setInterval(() => {
      if (child.pid) for (const c of childrenOf(child.pid)) seen.add(c);
    }, 2);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(watch);
      resolve({ code, stdout, stderr, children: [...seen] });
    });
  });
}

/**
 * The CLI starts only what a command needs (issue 12): `db migrate` works on an empty
 * database; a read-only command starts no sandbox, no job worker and fetches no spec; the
 * OpenAPI dump needs no database at all.
 */
describe('the warden CLI starts only what a command needs', () => {
  let db: TestDatabase;
  let redis: Redis;
  let specServer: ReturnType<typeof createServer>;
  let specUrl: string;
  let specHits = 0;
  const prefix = `warden-cli-test:${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    redis = new Redis(process.env.REDIS_URL ?? '');
    specServer = createServer((_req, res) => {
      specHits++;
      res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => specServer.listen(0, '127.0.0.1', resolve));
    specUrl = `http://127.0.0.1:${(specServer.address() as AddressInfo).port}/openapi.json`;
  });
  afterAll(async () => {
    redis?.disconnect();
    await new Promise((resolve) => specServer?.close(resolve));
    await db?.drop();
  });

  const env = () => ({
    DATABASE_URL: db.url,
    REDIS_URL: process.env.REDIS_URL ?? '',
    REDIS_KEY_PREFIX: prefix,
    CLOUDFLARE_SPEC_URL: specUrl,
  });

  it('`db migrate` migrates an empty database, and a second run has nothing to do', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const tables = async () =>
        (
          await client.query<{ n: string }>(
            "select count(*) as n from information_schema.tables where table_schema = 'public' and table_name = 'tenants'",
          )
        ).rows[0]?.n;
      expect(await tables()).toBe('0');
      const first = await runNode([CLI, 'db', 'migrate'], env());
      expect(first.code, first.stderr).toBe(0);
      expect(await tables()).toBe('1');
      // Every migration of the repository ran, not only the first few.
      const applied = await client.query<{ name: string }>('select name from kysely_migration order by name');
      const shipped = readdirSync(path.join(REPO_ROOT, 'migrations'))
        .filter((file) => file.endsWith('.ts'))
        .map((file) => file.replace(/\.ts$/, ''))
        .sort();
      expect(shipped.length).toBeGreaterThan(0);
      expect(applied.rows.map((row) => row.name)).toEqual(shipped);
      const again = await runNode([CLI, 'db', 'migrate'], env());
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).not.toBe(first.stdout);
      expect(first.children).toEqual([]);
    } finally {
      await client.end();
    }
  });

  it('`tenants list` starts no sandbox, job worker or spec download', async () => {
    const created = await runNode([CLI, 'tenants', 'create', 'CLI test'], env());
    expect(created.code, created.stderr).toBe(0);
    const listed = await runNode([CLI, 'tenants', 'list'], env());
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { tenants: { name: string }[] }).tenants).toEqual([
      expect.objectContaining({ name: 'CLI test' }),
    ]);
    // No sandbox child (nor any other process) was started.
    expect([...created.children, ...listed.children]).toEqual([]);
    // No spec was fetched, and no scheduler or worker registered anything in Redis.
    expect(specHits).toBe(0);
    const keys: string[] = [];
    for await (const batch of redis.scanStream({ match: `*${prefix}*`, count: 1_000 })) {
      keys.push(...(batch as string[]));
    }
    expect(keys).toEqual([]);
  });

  it('`openapi-dump` prints the API document with no database reachable', async () => {
    const dumped = await runNode([OPENAPI_DUMP], {
      DATABASE_URL: 'postgres://warden@127.0.0.1:9/nothing-listens-here',
      REDIS_URL: 'redis://127.0.0.1:9',
    });
    expect(dumped.code, dumped.stderr).toBe(0);
    const document = JSON.parse(dumped.stdout) as { openapi: string; paths: Record<string, unknown> };
    expect(document.openapi).toMatch(/^3\./);
    expect(Object.keys(document.paths)).toContain('/api/v1/execute_tool');
    expect(dumped.children).toEqual([]);
  });
});
