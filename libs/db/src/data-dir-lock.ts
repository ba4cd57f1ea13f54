import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { procStatFields } from '@warden/core';

/**
 * The embedded database (PGlite) is one PostgreSQL with no postmaster between processes: two
 * processes opening the same directory each think they own it, and what one writes the other
 * never sees (or overwrites). A lock file beside the directory, `<dir>.lock`, records who holds
 * it (pid, host, boot, process start time) so a second process refuses with a message naming
 * the holder, and a lock left by a process that died is taken over.
 *
 * Whether the holder still runs: on the same host (and boot), its pid is alive and is the
 * same process (start time), never our own pid (a restarted container is often pid 1 again).
 * A holder on another host (a shared volume, another container) cannot be asked: its lock
 * counts while the holder keeps touching it (every HEARTBEAT_MS), and is stale after STALE_MS.
 */
const HEARTBEAT_MS = 10_000;
const STALE_MS = 30_000;
const TAKEOVER_ATTEMPTS = 5;

export interface DataDirLockHolder {
  readonly pid: number;
  readonly hostname: string;
  readonly bootId: string | null;
  /** Start time of the process in clock ticks since boot (/proc), to tell a reused pid. */
  readonly processStart: string | null;
  /** The holder's command line, e.g. `node services/connector/src/main.ts`. */
  readonly command: string;
  readonly startedAt: string;
  readonly token: string;
}

export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
  readonly lockFile: string;
  readonly holder: DataDirLockHolder;

  constructor(dir: string, lockFile: string, holder: DataDirLockHolder, sameHost: boolean) {
    const where = sameHost ? `pid ${holder.pid}` : `pid ${holder.pid} on host ${holder.hostname}`;
    super(
      `the embedded database in ${dir} is in use by another Warden process (${where}: ${holder.command}, since ${holder.startedAt}); ` +
        'it allows one process at a time. Stop that process first, or work through its API; several processes need PostgreSQL (DATABASE_URL). ' +
        (sameHost
          ? `If no such process runs, delete ${lockFile}.`
          : `If that process is gone, the lock clears ${STALE_MS / 1000} s after its last heartbeat.`),
    );
    this.lockFile = lockFile;
    this.holder = holder;
  }
}

export interface DataDirLock {
  readonly lockFile: string;
  release(): void;
}

/** Locks held by this process, so a second open in the same process is refused too. */
const heldHere = new Set<string>();

function readOptional(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function processStart(pid: number): string | null {
  // Field 22 of proc(5): the start time.
  return procStatFields(pid)?.[19] ?? null;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseHolder(text: string | null): DataDirLockHolder | null {
  if (!text) return null;
  try {
    const value = JSON.parse(text) as Partial<DataDirLockHolder>;
    return typeof value.pid === 'number' && typeof value.token === 'string'
      ? (value as DataDirLockHolder)
      : null;
  } catch {
    return null;
  }
}

function isSameHost(holder: DataDirLockHolder, bootId: string | null): boolean {
  return holder.hostname === hostname() && holder.bootId === bootId;
}

/** Whether the lock described by `holder` (read from `lockFile`) still belongs to a live process. */
function holderAlive(lockFile: string, holder: DataDirLockHolder, bootId: string | null): boolean {
  if (isSameHost(holder, bootId)) {
    if (holder.pid === process.pid) return heldHere.has(lockFile);
    if (!pidAlive(holder.pid)) return false;
    const start = processStart(holder.pid);
    return start === null || holder.processStart === null || start === holder.processStart;
  }
  try {
    return Date.now() - statSync(lockFile).mtimeMs < STALE_MS;
  } catch {
    return false;
  }
}

/** Throws DataDirLockedError when a live process holds the lock of `dir`; takes nothing. */
export function assertDataDirUnlocked(dir: string): void {
  const lockFile = `${dir}.lock`;
  const bootId = readOptional('/proc/sys/kernel/random/boot_id');
  const holder = parseHolder(readOptional(lockFile));
  if (holder && holderAlive(lockFile, holder, bootId)) {
    throw new DataDirLockedError(dir, lockFile, holder, isSameHost(holder, bootId));
  }
}

/**
 * Takes the lock of `dir` for this process, or throws DataDirLockedError naming the live
 * holder. A stale lock (its holder died) is replaced.
 */
export function acquireDataDirLock(dir: string): DataDirLock {
  const lockFile = `${dir}.lock`;
  const bootId = readOptional('/proc/sys/kernel/random/boot_id');
  const me: DataDirLockHolder = {
    pid: process.pid,
    hostname: hostname(),
    bootId,
    processStart: processStart(process.pid),
    command: process.argv.slice(1).join(' '),
    startedAt: new Date().toISOString(),
    token: randomBytes(12).toString('hex'),
  };
  const mine = `${JSON.stringify(me)}\n`;
  // Written whole under a private name, then linked into place: link fails if the lock exists,
  // and nobody ever reads a half-written lock.
  const temp = `${lockFile}.${process.pid}.${me.token}`;
  writeFileSync(temp, mine, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < TAKEOVER_ATTEMPTS; attempt++) {
      try {
        linkSync(temp, lockFile);
        heldHere.add(lockFile);
        const heartbeat = setInterval(() => {
          const now = new Date();
          try {
            utimesSync(lockFile, now, now);
          } catch {
            // Deleted by hand: nothing to keep fresh.
          }
        }, HEARTBEAT_MS);
        heartbeat.unref();
        return {
          lockFile,
          release() {
            clearInterval(heartbeat);
            heldHere.delete(lockFile);
            // Only our own lock: after a takeover by someone else it is theirs.
            if (parseHolder(readOptional(lockFile))?.token === me.token) unlinkSync(lockFile);
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const seen = readOptional(lockFile);
      const holder = parseHolder(seen);
      if (seen === null) continue; // released meanwhile
      if (holder && holderAlive(lockFile, holder, bootId)) {
        throw new DataDirLockedError(dir, lockFile, holder, isSameHost(holder, bootId));
      }
      // Stale (or unreadable): move exactly the file judged aside. If another process took over
      // in between, what was moved is its fresh lock, and it goes back.
      const aside = `${lockFile}.stale.${me.token}`;
      try {
        renameSync(lockFile, aside);
      } catch {
        continue;
      }
      if (readOptional(aside) === seen) unlinkSync(aside);
      else renameSync(aside, lockFile);
    }
    throw new Error(
      `could not take ${lockFile} after ${TAKEOVER_ATTEMPTS} attempts: other processes keep replacing it`,
    );
  } finally {
    unlinkSync(temp);
  }
}
