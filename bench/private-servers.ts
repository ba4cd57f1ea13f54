/**
 * PostgreSQL and Redis servers of a benchmark's own, on free loopback ports: their statement
 * counts, WAL, command statistics and CPU time are the run's alone, whoever else shares the
 * machine's servers.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';

function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(path.join(root, v, 'bin/initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0]) return path.join(root, versions[0], 'bin');
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian package postgresql',
    );
  }
}

export interface PrivatePostgres {
  readonly url: string;
  readonly adminUrl: string;
  readonly postmasterPid: number;
  stop(): void;
}

/** initdb + pg_ctl start in a temporary directory; as the `postgres` user when run as root. */
export function startPostgres(port: number, database: string): PrivatePostgres {
  const bin = postgresBin();
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-pg-'));
  const asRoot = userInfo().uid === 0;
  const user = asRoot ? 'postgres' : userInfo().username;
  const exec = (file: string, args: string[]) =>
    asRoot
      ? execFileSync('runuser', ['-u', 'postgres', '--', path.join(bin, file), ...args], { stdio: 'pipe' })
      : execFileSync(path.join(bin, file), args, { stdio: 'pipe' });
  if (asRoot) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, id('-u'), id('-g'));
  }
  const data = path.join(dir, 'data');
  exec('initdb', ['-D', data, '-U', user, '--auth=trust', '--no-sync', '-E', 'UTF8']);
  // Production-like durability settings (fsync and synchronous_commit on): the WAL is what it
  // would be. pg_stat_statements counts statements; track_io_timing is not needed.
  const options = [
    `-p ${port}`,
    '-c listen_addresses=127.0.0.1',
    `-c unix_socket_directories=${dir}`,
    '-c shared_preload_libraries=pg_stat_statements',
    '-c pg_stat_statements.track=all',
    '-c max_connections=100',
  ].join(' ');
  exec('pg_ctl', ['-D', data, '-l', path.join(dir, 'postgres.log'), '-o', options, '-w', 'start']);
  const pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    url: `postgres://${user}@127.0.0.1:${port}/${database}`,
    adminUrl: `postgres://${user}@127.0.0.1:${port}/postgres`,
    postmasterPid: pid,
    stop() {
      try {
        exec('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export interface PrivateRedis {
  readonly url: string;
  readonly pid: number;
  stop(): void;
}

export function startRedis(port: number): PrivateRedis {
  const pidFile = path.join(tmpdir(), `warden-bench-redis-${port}.pid`);
  execFileSync('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'yes',
    '--pidfile',
    pidFile,
  ]);
  return {
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return Number(readFileSync(pidFile, 'utf8').trim());
    },
    stop() {
      try {
        execFileSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave'], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
      rmSync(pidFile, { force: true });
    },
  };
}

export async function waitForRedis(url: string): Promise<Redis> {
  for (let attempt = 0; ; attempt++) {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await redis.connect();
      return redis;
    } catch (error) {
      redis.disconnect();
      if (attempt > 50) throw error;
      await delay(100);
    }
  }
}
