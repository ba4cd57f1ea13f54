import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WardenError } from '@warden/core';

const FORMAT = 'warden-local-keys/v1';

export interface LocalKeyVersion {
  readonly version: number;
  readonly key: Buffer;
  readonly createdAt: string;
}

export interface LocalKeyRing {
  readonly current: number;
  readonly versions: ReadonlyMap<number, LocalKeyVersion>;
}

interface KeyFileJson {
  format: typeof FORMAT;
  current: number;
  keys: Array<{ version: number; key: string; created_at: string }>;
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
  return { current: json.current, versions };
}

function serialize(ring: LocalKeyRing): string {
  const json: KeyFileJson = {
    format: FORMAT,
    current: ring.current,
    keys: [...ring.versions.values()]
      .sort((a, b) => a.version - b.version)
      .map((v) => ({ version: v.version, key: v.key.toString('base64'), created_at: v.createdAt })),
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
    };
    writeAtomically(file, ring);
  }
  return readKeyRing(file);
}

/** Adds a new key version and makes it current; older versions stay until retired. */
export function addKeyVersion(file: string): LocalKeyRing {
  const ring = readKeyRing(file);
  const next = Math.max(...ring.versions.keys()) + 1;
  const versions = new Map(ring.versions);
  versions.set(next, { version: next, key: randomBytes(32), createdAt: new Date().toISOString() });
  const updated = { current: next, versions };
  writeAtomically(file, updated);
  return updated;
}

/** Removes a key version from the file. The caller checks no data key is still wrapped under it. */
export function removeKeyVersion(file: string, version: number): LocalKeyRing {
  const ring = readKeyRing(file);
  if (version === ring.current)
    throw new WardenError('conflict', `key version ${version} is current; rotate first`);
  if (!ring.versions.has(version)) throw new WardenError('not_found', `key version ${version} not found`);
  const versions = new Map(ring.versions);
  versions.delete(version);
  const updated = { current: ring.current, versions };
  writeAtomically(file, updated);
  return updated;
}
