import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataDirLockedError, acquireDataDirLock, assertDataDirUnlocked } from './data-dir-lock.ts';
import type { DataDirLockHolder } from './data-dir-lock.ts';

let root: string;
let dir: string;
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'warden-lock-'));
  dir = path.join(root, 'pglite');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', ''], { stdio: 'ignore' });
  expect(child.status).toBe(0);
  return child.pid as number;
}

function writeLock(holder: Partial<DataDirLockHolder>): void {
  const full: DataDirLockHolder = {
    pid: 1,
    hostname: hostname(),
    bootId: bootId(),
    processStart: null,
    command: 'node services/connector/src/main.ts',
    startedAt: '2026-01-01T00:00:00.000Z',
    token: 'theirs',
    ...holder,
  };
  writeFileSync(`${dir}.lock`, JSON.stringify(full));
}

describe('embedded database directory lock', () => {
  it('records this process and is released on release()', () => {
    const lock = acquireDataDirLock(dir);
    const holder = JSON.parse(readFileSync(`${dir}.lock`, 'utf8')) as DataDirLockHolder;
    expect(holder.pid).toBe(process.pid);
    expect(holder.hostname).toBe(hostname());
    lock.release();
    expect(existsSync(`${dir}.lock`)).toBe(false);
  });

  it('refuses a second holder, in this process too, naming the first', () => {
    const lock = acquireDataDirLock(dir);
    try {
      expect(() => acquireDataDirLock(dir)).toThrow(DataDirLockedError);
      expect(() => assertDataDirUnlocked(dir)).toThrow(
        new RegExp(`in use by another Warden process \\(pid ${process.pid}:`),
      );
    } finally {
      lock.release();
    }
    acquireDataDirLock(dir).release();
  });

  it('refuses while the recorded process is alive on this host', () => {
    // The parent of this test process is alive and is not us.
    writeLock({ pid: process.ppid });
    expect(() => acquireDataDirLock(dir)).toThrow(/pid \d+: node services\/connector\/src\/main\.ts/);
    expect(JSON.parse(readFileSync(`${dir}.lock`, 'utf8')).token).toBe('theirs');
  });

  it('takes over a lock whose process died', () => {
    writeLock({ pid: deadPid() });
    assertDataDirUnlocked(dir);
    const lock = acquireDataDirLock(dir);
    expect(JSON.parse(readFileSync(`${dir}.lock`, 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('takes over a lock naming its own pid that it does not hold (a restarted container is pid 1 again)', () => {
    writeLock({ pid: process.pid });
    acquireDataDirLock(dir).release();
  });

  it('takes over a lock from before a reboot, and one whose pid now belongs to another process', () => {
    writeLock({ pid: process.ppid, bootId: 'another-boot', hostname: hostname() });
    // Another boot on the same host name counts as another host: only the heartbeat speaks for it.
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${dir}.lock`, old, old);
    acquireDataDirLock(dir).release();
    writeLock({ pid: process.ppid, processStart: 'not-its-start-time' });
    acquireDataDirLock(dir).release();
  });

  it('trusts a holder on another host while it keeps its heartbeat, and not after', () => {
    writeLock({ pid: 4242, hostname: 'elsewhere' });
    expect(() => acquireDataDirLock(dir)).toThrow(/pid 4242 on host elsewhere/);
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${dir}.lock`, old, old);
    acquireDataDirLock(dir).release();
  });

  it('replaces an unreadable lock', () => {
    writeFileSync(`${dir}.lock`, 'not json');
    acquireDataDirLock(dir).release();
  });
});
