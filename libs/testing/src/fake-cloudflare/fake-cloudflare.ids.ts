import { createHash, randomBytes } from 'node:crypto';

/** A Cloudflare-style identifier: 32 lowercase hex characters. */
export function newId(): string {
  return randomBytes(16).toString('hex');
}

/** An API token value: 40 characters of [A-Za-z0-9_-], generated at runtime (base64url of 30 random bytes). */
export function newTokenValue(): string {
  return randomBytes(30).toString('base64url');
}

/** A Global API Key: 37 lowercase hex characters. */
export function newGlobalApiKey(): string {
  return randomBytes(19).toString('hex').slice(0, 37);
}

/** A `cf-ray` header value as Cloudflare sends it: 16 hex characters and a colo code. */
export function newRay(): string {
  return `${randomBytes(8).toString('hex')}-SJC`;
}

export const ID_SHAPE = /^[0-9a-f]{32}$/;
export const TOKEN_VALUE_SHAPE = /^[A-Za-z0-9_-]{20,255}$/;
export const GLOBAL_API_KEY_SHAPE = /^[0-9a-f]{37}$/;

/** A stable non-negative 32-bit number for deterministic fake data (analytics, name servers). */
export function stableHash(...parts: readonly string[]): number {
  return createHash('sha256').update(parts.join('\u0000')).digest().readUInt32BE(0);
}
