import { WardenError, hasControlCharacters } from '@warden/core';

/**
 * One spelling per upstream path. Policy is evaluated on the canonical form and exactly
 * that form is sent, so no encoding trick can make the policy see one path and Cloudflare
 * route another.
 *
 * Per segment, after percent-decoding:
 * - unreserved characters (`A-Z a-z 0-9 - . _ ~`) and the sub-delimiters `! $ & ' ( ) * + , =`
 *   plus `:` and `@` are written raw (`%6C` → `l`, `%40` → `@`): servers decode them
 *   alike, so the two spellings are one resource;
 * - every other byte is written `%XX` with upper-case hex (UTF-8 for non-ASCII);
 * - refused: `;` raw or encoded (matrix parameters, which some servers strip before routing),
 *   an encoded `\`, an encoded `/` (except in a Workers KV key name, which Cloudflare
 *   documents as URL-encoded and which may contain `/`), `.` and `..` segments, empty
 *   segments, control characters, bytes that are not UTF-8, and double encoding (`%25`
 *   followed by two hex digits, which a second decode would turn into another character).
 *
 * Case is kept: ids, script, bucket and key names are case-sensitive. Cloudflare's fixed
 * resource names are all lower case (every literal segment of the API document), so deny
 * rules match them ignoring ASCII case while allow rules match exactly (see
 * `policy-matcher.ts`): `LOGPUSH` cannot slip past a deny rule on `logpush`, and an allow
 * rule on a name never opens its case variants.
 *
 * The form is a fixed point of the WHATWG URL parser that the upstream client builds its
 * request URL with (no dot segments, no backslashes, nothing it would re-encode).
 */

export const MAX_PATH_LENGTH = 4096;
/** Cloudflare's API paths have at most a dozen segments; this bounds policy matching per request. */
export const MAX_PATH_SEGMENTS = 64;

/** Raw in canonical form: unreserved, sub-delims except `;`, `:` and `@` (by ASCII code). */
const RAW = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@") {
  RAW[c.charCodeAt(0)] = 1;
}
/** What a caller may write raw: the above, `%` escapes and `/`. */
const RAW_INPUT = /^[A-Za-z0-9\-._~!$&'()*+,=:@%/]*$/;
const HEX = /^[0-9A-Fa-f]{2}$/;

/** Segments whose last one is a Workers KV key name: the one place an encoded `/` is data. */
const KV_KEY_PREFIXES: readonly (readonly string[])[] = [
  ['accounts', '*', 'storage', 'kv', 'namespaces', '*', 'values'],
  ['accounts', '*', 'storage', 'kv', 'namespaces', '*', 'metadata'],
];

const DOT_SEGMENTS = 'must not contain "." or ".." segments, encoded or not';

const utf8 = new TextDecoder('utf-8', { fatal: true });

class PathRefusal extends Error {}

function refusal(field: string, reason: string): WardenError {
  return new WardenError('invalid_request', `${field}: ${reason}`, { field });
}

function describeRawCharacter(c: string): string {
  if (c === ';') return 'must not contain ";" (matrix parameters); put parameters in `query`';
  if (c === '?' || c === '#') return `must not contain "${c}"; put parameters in \`query\``;
  if (c === '\\') return 'must not contain "\\"';
  if (hasControlCharacters(c)) return 'must not contain control characters';
  return 'contains characters that must be percent-encoded (use encodeURIComponent for each segment)';
}

interface Segment {
  readonly canonical: string;
  readonly encodedSlash: boolean;
}

function hexDigit(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

/** Throws PathRefusal with the reason; the caller names the field. */
function canonicalSegmentOf(raw: string): Segment {
  // Without escapes a segment (already checked against RAW_INPUT) is its own canonical form.
  if (!raw.includes('%')) {
    if (raw === '.' || raw === '..') throw new PathRefusal(DOT_SEGMENTS);
    return { canonical: raw, encodedSlash: false };
  }
  const bytes: number[] = [];
  let encodedSlash = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c !== '%') {
      bytes.push(c.charCodeAt(0));
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!HEX.test(hex)) throw new PathRefusal(`has an invalid percent-encoding in "${raw.slice(0, 100)}"`);
    const byte = Number.parseInt(hex, 16);
    if (byte === 0x2f) encodedSlash = true;
    if (byte === 0x5c) throw new PathRefusal('must not contain an encoded "\\" (%5C)');
    if (byte === 0x3b) throw new PathRefusal('must not contain an encoded ";" (%3B)');
    bytes.push(byte);
    i += 2;
  }
  for (let i = 0; i + 2 < bytes.length; i++) {
    if (bytes[i] === 0x25 && hexDigit(bytes[i + 1] as number) && hexDigit(bytes[i + 2] as number)) {
      throw new PathRefusal('is double-encoded ("%25" followed by two hex digits); encode each segment once');
    }
  }
  let decoded: string;
  try {
    decoded = utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new PathRefusal('is not valid UTF-8 once percent-decoded');
  }
  if (hasControlCharacters(decoded))
    throw new PathRefusal('must not contain control characters, encoded or not');
  // Within a KV key too: an upstream that decoded its %2F would meet a dot segment.
  if (decoded.split('/').some((part) => part === '.' || part === '..')) {
    throw new PathRefusal(DOT_SEGMENTS);
  }
  let canonical = '';
  for (const byte of bytes) {
    canonical +=
      byte < 0x80 && RAW[byte] === 1
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return { canonical, encodedSlash };
}

/**
 * The canonical spelling of one segment (no `/`), e.g. a literal segment of a policy
 * pattern; null when the segment would be refused in a path.
 */
export function canonicalSegment(segment: string): string | null {
  if (segment === '' || segment.includes('/') || !RAW_INPUT.test(segment)) return null;
  try {
    const { canonical, encodedSlash } = canonicalSegmentOf(segment);
    return encodedSlash ? null : canonical;
  } catch (error) {
    if (error instanceof PathRefusal) return null;
    throw error;
  }
}

function isKvKey(segments: readonly Segment[], index: number): boolean {
  return (
    index === segments.length - 1 &&
    KV_KEY_PREFIXES.some(
      (prefix) =>
        prefix.length === index &&
        prefix.every((literal, i) => literal === '*' || segments[i]?.canonical === literal),
    )
  );
}

/**
 * The canonical form of an upstream API path (`/zones/abc/dns_records`), or an
 * `invalid_request` naming `field` that says what to fix.
 */
export function canonicalizePath(path: unknown, field = 'path'): string {
  if (typeof path !== 'string' || path === '') throw refusal(field, 'must be a string such as "/zones"');
  if (path.length > MAX_PATH_LENGTH) throw refusal(field, `must be at most ${MAX_PATH_LENGTH} characters`);
  if (!path.startsWith('/')) {
    throw refusal(field, 'must be a relative API path starting with "/", e.g. "/zones"');
  }
  if (!RAW_INPUT.test(path)) {
    const bad = [...path].find((c) => !RAW_INPUT.test(c)) as string;
    throw refusal(field, describeRawCharacter(bad));
  }
  const raw = path.slice(1).split('/');
  if (raw.length > MAX_PATH_SEGMENTS) {
    throw refusal(field, `has ${raw.length} segments; at most ${MAX_PATH_SEGMENTS} are allowed`);
  }
  if (raw.some((s) => s === '')) {
    throw refusal(field, 'must not contain empty segments ("//" or a trailing "/")');
  }
  const segments = raw.map((segment, i) => {
    try {
      return canonicalSegmentOf(segment);
    } catch (error) {
      if (error instanceof PathRefusal) throw refusal(field, `segment ${i + 1} ${error.message}`);
      throw error;
    }
  });
  segments.forEach((segment, i) => {
    if (segment.encodedSlash && !isKvKey(segments, i)) {
      throw refusal(
        field,
        `segment ${i + 1} contains an encoded "/" (%2F); write the segments separately (only Workers KV key names may contain %2F)`,
      );
    }
  });
  return `/${segments.map((s) => s.canonical).join('/')}`;
}

/** The segments of a canonical path. */
export function pathSegments(canonicalPath: string): string[] {
  return canonicalPath.split('/').filter((s) => s !== '');
}
