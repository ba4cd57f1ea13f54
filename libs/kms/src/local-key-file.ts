import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { WardenError } from '@warden/core';

const FORMAT = 'warden-local-keys/v1';

export interface LocalKeyVersion {
  readonly version: number;
  readonly key: Buffer;
  readonly createdAt: string;
}

/** The Ed25519 key that signs audit checkpoints; kept beside the wrapping keys, never in the database. */
export interface LocalSigningKey {
  /** `local-ed25519:` and the first 16 hex digits of the SHA-256 of the public key (SPKI DER). */
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly createdAt: string;
}

export interface LocalKeyRing {
  readonly current: number;
  readonly versions: ReadonlyMap<number, LocalKeyVersion>;
  /** Absent until the first checkpoint is signed (files written before checkpoints existed). */
  readonly signingKey: LocalSigningKey | null;
}

interface KeyFileJson {
  format: typeof FORMAT;
  current: number;
  keys: Array<{ version: number; key: string; created_at: string }>;
  /** Ed25519 private key, PKCS#8 DER in Base64. */
  signing_key?: { private_key: string; created_at: string };
}

function configError(file: string, message: string): WardenError {
  return new WardenError('internal', `local key file ${file}: ${message}`);
}

function parse(file: string, text: string): LocalKeyRing {
  let json: KeyFileJson;
  try {
    json = JSON.parse(text) as KeyFileJson;
  } catch {
    throw configError(file, 'is not valid JSON');
  }
  if (json.format !== FORMAT || !Array.isArray(json.keys)) throw configError(file, `is not a ${FORMAT} file`);
  const versions = new Map<number, LocalKeyVersion>();
  for (const k of json.keys) {
    const key = Buffer.from(k.key, 'base64');
    if (!Number.isInteger(k.version) || key.length !== 32)
      throw configError(file, `key version ${k.version} is malformed`);
    versions.set(k.version, { version: k.version, key, createdAt: k.created_at });
  }
  if (!versions.has(json.current)) throw configError(file, `current version ${json.current} is missing`);
  return { current: json.current, versions, signingKey: parseSigningKey(file, json.signing_key) };
}

function signingKeyFrom(privateKey: KeyObject, createdAt: string): LocalSigningKey {
  const publicKey = createPublicKey(privateKey);
  const fingerprint = createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
  return { keyId: `local-ed25519:${fingerprint.slice(0, 16)}`, privateKey, publicKey, createdAt };
}

function parseSigningKey(file: string, json: KeyFileJson['signing_key']): LocalSigningKey | null {
  if (json === undefined) return null;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({
      key: Buffer.from(json.private_key, 'base64'),
      format: 'der',
      type: 'pkcs8',
    });
  } catch {
    throw configError(file, 'the audit signing key is malformed');
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw configError(file, 'the audit signing key is not Ed25519');
  return signingKeyFrom(privateKey, json.created_at);
}

function serialize(ring: LocalKeyRing): string {
  const json: KeyFileJson = {
    format: FORMAT,
    current: ring.current,
    keys: [...ring.versions.values()]
      .sort((a, b) => a.version - b.version)
      .map((v) => ({ version: v.version, key: v.key.toString('base64'), created_at: v.createdAt })),
    ...(ring.signingKey
      ? {
          signing_key: {
            private_key: ring.signingKey.privateKey
              .export({ type: 'pkcs8', format: 'der' })
              .toString('base64'),
            created_at: ring.signingKey.createdAt,
          },
        }
      : {}),
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** Write to a temp file with 0600 and rename, so a crash never leaves a half-written key file. */
function writeAtomically(file: string, ring: LocalKeyRing): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, serialize(ring), { mode: 0o600, flag: 'w' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

const LOCK_WAIT_MS = 5_000;
/** A lock older than this was left by a process that died while holding it. */
const STALE_LOCK_MS = 30_000;

/**
 * Runs a read-modify-write of the key file under `FILE.lock` (created exclusively), so a
 * rotation in the CLI and a replica creating the signing key never overwrite each other.
 */
function withFileLock<T>(file: string, change: () => T): T {
  const lock = `${file}.lock`;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) unlinkSync(lock);
      } catch {
        // Released meanwhile: try again.
      }
      if (Date.now() > deadline) throw configError(file, `is locked by another process (${lock})`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  try {
    return change();
  } finally {
    try {
      unlinkSync(lock);
    } catch {
      // Already removed as stale by a process that waited too long: nothing to release.
    }
  }
}

export function readKeyRing(file: string): LocalKeyRing {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw configError(file, `has mode ${mode.toString(8)}; it holds key material, run: chmod 600 ${file}`);
  }
  return parse(file, readFileSync(file, 'utf8'));
}

/** Reads the key file, creating it (mode 0600, one fresh 256-bit key) on first start. */
export function loadOrCreateKeyRing(file: string): LocalKeyRing {
  if (!existsSync(file)) {
    const ring: LocalKeyRing = {
      current: 1,
      versions: new Map([[1, { version: 1, key: randomBytes(32), createdAt: new Date().toISOString() }]]),
      signingKey: null,
    };
    writeAtomically(file, ring);
  }
  return readKeyRing(file);
}

/** Adds a new key version and makes it current; older versions stay until retired. */
export function addKeyVersion(file: string): LocalKeyRing {
  return withFileLock(file, () => {
    const ring = readKeyRing(file);
    const next = Math.max(...ring.versions.keys()) + 1;
    const versions = new Map(ring.versions);
    versions.set(next, { version: next, key: randomBytes(32), createdAt: new Date().toISOString() });
    const updated = { ...ring, current: next, versions };
    writeAtomically(file, updated);
    return updated;
  });
}

/** Removes a key version from the file. The caller checks no data key is still wrapped under it. */
export function removeKeyVersion(file: string, version: number): LocalKeyRing {
  return withFileLock(file, () => {
    const ring = readKeyRing(file);
    if (version === ring.current)
      throw new WardenError('conflict', `key version ${version} is current; rotate first`);
    if (!ring.versions.has(version)) throw new WardenError('not_found', `key version ${version} not found`);
    const versions = new Map(ring.versions);
    versions.delete(version);
    const updated = { ...ring, versions };
    writeAtomically(file, updated);
    return updated;
  });
}

/**
 * The audit signing key, created (Ed25519, in the same 0600 file) the first time one is
 * needed. Replicas sharing the file agree on one key: creation happens under the file lock
 * and re-reads the file first.
 */
export function loadOrCreateSigningKey(file: string): LocalSigningKey {
  const existing = loadOrCreateKeyRing(file).signingKey;
  if (existing) return existing;
  return withFileLock(file, () => {
    const ring = readKeyRing(file);
    if (ring.signingKey) return ring.signingKey;
    const { privateKey } = generateKeyPairSync('ed25519');
    const signingKey = signingKeyFrom(privateKey, new Date().toISOString());
    writeAtomically(file, { ...ring, signingKey });
    return signingKey;
  });
}
