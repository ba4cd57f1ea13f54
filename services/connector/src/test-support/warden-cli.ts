import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ChainReport } from '@warden/audit';
import { REPO_ROOT } from './paths.ts';
import type { TestApp } from './test-app.ts';

const run = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'services/connector/bin/warden.js');

export interface WardenCli {
  /** `warden audit verify --tenant ID`: its exit code and its report of the tenant. */
  verify(tenantId: string): Promise<{ code: number; ok: boolean; report: ChainReport }>;
  /** `warden audit maintain`: partitions, the unknown-outcome sweep and checkpoints, now. */
  maintain(): Promise<{ unknown_outcomes_closed: number; checkpoints_signed: number }>;
}

/** The real `warden` command, in a child process, with `env` on top of this one's (logs silenced). */
export function wardenCli(env: Readonly<Record<string, string>>): WardenCli {
  // The audit commands need no Redis: none is opened.
  const options = { env: { ...process.env, ...env, REDIS_URL: '', LOG_LEVEL: 'silent' } };
  return {
    async verify(tenantId) {
      const out = await run(process.execPath, [CLI, 'audit', 'verify', '--tenant', tenantId], options).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
      );
      const parsed = JSON.parse(out.stdout) as { ok: boolean; tenants: ChainReport[] };
      return { code: out.code, ok: parsed.ok, report: parsed.tenants[0] as ChainReport };
    },
    async maintain() {
      return JSON.parse((await run(process.execPath, [CLI, 'audit', 'maintain'], options)).stdout) as {
        unknown_outcomes_closed: number;
        checkpoints_signed: number;
      };
    },
  };
}

/**
 * The real `warden` command on the test app's database, key file and Redis (`redisUrl`: the
 * address the CLI reaches, which may differ from the app's when its connection is proxied),
 * in a child process with logs silenced; for the key commands (`keys rotate`, `retire`, `status`).
 */
export function appCli(t: TestApp, redisUrl: string) {
  return (...args: string[]): Promise<{ stdout: string; stderr: string }> => {
    const config = t.container.config;
    if (config.kms.provider !== 'local') throw new Error('this test runs with the local key file');
    return run(process.execPath, [CLI, ...args], {
      env: {
        ...process.env,
        DATABASE_URL: t.db.url,
        DATA_DIR: t.dataDir,
        LOCAL_KEY_FILE: config.kms.keyFile,
        REDIS_URL: redisUrl,
        REDIS_KEY_PREFIX: config.redisKeyPrefix,
        LOG_LEVEL: 'silent',
      },
    });
  };
}

/** Runs `code` for `identifier` through the test app's execute, returning the body. */
export async function executeBody(t: TestApp, apiKey: string, identifier: string, code: string) {
  return (await t.execute(apiKey, identifier, code)).json() as { data?: unknown; error?: { code: string } };
}
