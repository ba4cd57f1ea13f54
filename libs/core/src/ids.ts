import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * Bytes from the CSPRNG, drawn 4 KiB at a time: every id and audit record takes some, and one
 * `randomBytes` call per id cost more than the rest of making it. Each byte is used once.
 */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolAt = 0;

function randomByte(): number {
  if (poolAt >= pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolAt = 0;
  }
  const byte = pool[poolAt] as number;
  // Session ids are made here too: no byte of one stays readable in the pool once it is drawn.
  pool[poolAt++] = 0;
  return byte;
}

/** Random string over [0-9a-z] with rejection sampling, so every character is uniform. */
export function randomString(length: number): string {
  let out = '';
  while (out.length < length) {
    const byte = randomByte();
    if (byte < 252) out += ALPHABET[byte % 36];
  }
  return out;
}

export type IdPrefix =
  'ten' | 'key' | 'con' | 'ca' | 'mcp' | 'exe' | 'aud' | 'snk' | 'dlv' | 'whk' | 'req' | 'chk' | 'apr';

/** Opaque, prefixed, URL-safe id: `ca_3k9...` (20 random characters, ~103 bits). */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomString(20)}`;
}

export function hasPrefix(id: string, prefix: IdPrefix): boolean {
  return id.startsWith(`${prefix}_`) && /^[a-z]+_[0-9a-z]{20}$/.test(id);
}

/** C0/C1 control characters and DEL: never valid in names, identifiers or paths. */
export function hasControlCharacters(value: string): boolean {
  return /\p{Cc}/u.test(value);
}

/**
 * Free text from outside (Cloudflare account names, say) made storable in PostgreSQL text and
 * jsonb: NUL and unpaired surrogates become U+FFFD. For display only; ids are never rewritten.
 */
export function storableText(value: string): string {
  return value.toWellFormed().replaceAll('\u0000', '\uFFFD');
}
