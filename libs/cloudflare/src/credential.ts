import { WardenError } from '@warden/core';

/** A Cloudflare credential as the vault holds it. Never logged, never returned. */
export type CloudflareCredential =
  | { readonly type: 'api_token'; readonly apiToken: string }
  | { readonly type: 'global_api_key'; readonly email: string; readonly apiKey: string };

export interface CloudflareAccount {
  readonly id: string;
  readonly name: string;
}

/** What verification learned about a credential; stored beside the sealed secret. */
export interface VerifiedCredential {
  readonly tokenKind: 'user' | 'account';
  readonly userId: string | null;
  readonly accounts: readonly CloudflareAccount[];
  readonly tokenId: string | null;
  /** `active` for a usable credential (verification refuses anything else). */
  readonly tokenStatus: string;
  readonly expiresOn: Date | null;
}

/** Request headers that carry the credential; set only in the parent process, right before the call. */
export function authHeaders(credential: CloudflareCredential): Record<string, string> {
  return credential.type === 'api_token'
    ? { authorization: `Bearer ${credential.apiToken}` }
    : { 'x-auth-email': credential.email, 'x-auth-key': credential.apiKey };
}

/** Every string of a credential, for leak checks (logs, errors, results). */
export function credentialSecrets(credential: CloudflareCredential): string[] {
  return credential.type === 'api_token' ? [credential.apiToken] : [credential.apiKey];
}

/** What an echoed secret is replaced by. */
export const REDACTED = '[REDACTED]';

/**
 * The forms in which a secret can come back inside a response: as it is, JSON-escaped, Base64
 * (standard and URL alphabet, with and without padding; also when it starts inside the encoded
 * text, as in `Basic base64(user:secret)` or `base64("Bearer " + secret)`), hex of its bytes,
 * percent-encoded; a hex secret (R2's derived secret) also in upper case and as its raw bytes in
 * Base64. A secret stored otherwise transformed (compressed, split, another cipher) is not found.
 */
export function secretForms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = new Set([
    secret,
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    ...base64Forms(bytes),
  ]);
  // A hex secret (R2's derived secret, a Global API Key of 37 digits) in either case, and as its
  // raw bytes in Base64 when it has whole bytes.
  if (/^[0-9a-fA-F]{16,}$/.test(secret)) {
    forms.add(secret.toLowerCase());
    forms.add(secret.toUpperCase());
    if (secret.length % 2 === 0) for (const form of base64Forms(Buffer.from(secret, 'hex'))) forms.add(form);
  }
  // Longest first, so a form is never left half-replaced by a shorter one it contains.
  return [...forms].filter((f) => f.length >= 8).sort((a, b) => b.length - a.length);
}

/**
 * Base64 (both alphabets, with and without padding) of `bytes` on its own, and the part of the
 * encoding that does not depend on what surrounds it when `bytes` starts 0, 1 or 2 bytes into a
 * 3-byte group (the characters of groups wholly inside `bytes`): at 0 with more data after it,
 * the last group of the encoding alone also holds the bytes that follow.
 */
function base64Forms(bytes: Buffer): string[] {
  const forms: string[] = [];
  for (const alphabet of ['base64', 'base64url'] as const) {
    const whole = bytes.toString(alphabet);
    forms.push(whole, whole.replace(/=+$/, ''), whole.slice(0, Math.floor(bytes.length / 3) * 4));
    for (const shift of [1, 2]) {
      const end = Math.floor((shift + bytes.length) / 3) * 4;
      forms.push(
        Buffer.concat([Buffer.alloc(shift), bytes])
          .toString(alphabet)
          .slice(4, end),
      );
    }
  }
  return forms;
}

/**
 * A scrubber for the exact secret values of one credential, and of the other secrets a call
 * made with it may hold (`alsoSecrets`: the R2 secret access keys of `r2Secrets`): it replaces
 * every occurrence of any of their forms in a response body (or a tail event) before anything
 * parses it, so no echo of a secret (Cloudflare quoting a header in an error, a token listing its
 * own value, a Worker logging its R2 key) reaches a result, an error message, an audit record or
 * a log line.
 */
export function credentialScrubber(
  credential: CloudflareCredential,
  alsoSecrets: readonly string[] = [],
): (body: Buffer) => Buffer {
  const own = scrubbingOf(credential);
  const { needles } =
    alsoSecrets.length === 0 ? own : needlesOf(new Set([...own.forms, ...alsoSecrets.flatMap(secretForms)]));
  // On the bytes (longest form first): what is not a secret is kept as it was, even if not UTF-8.
  const replaced = (bytes: Buffer): Buffer =>
    needles.reduce((out, needle) => replaceAll(out, needle, REDACTED_BYTES), bytes);
  return (body) => {
    const scrubbed = needles.some((needle) => body.includes(needle)) ? replaced(body) : body;
    // JSON (and other text quoting it) may spell a character several ways (\uXXXX, \/): a body
    // with escapes is read with them spelled the one way, and returned so, secrets redacted, only
    // if a secret shows there (other bodies stay byte for byte as sent).
    // So is a body with percent-escapes of characters no encoder needs to escape (`%54k` for `Tk`).
    const escaped = scrubbed.includes(BACKSLASH);
    const percent = scrubbed.includes(PERCENT);
    if (!escaped && !percent) return scrubbed;
    const unescaped = escaped ? unescapePlain(scrubbed) : scrubbed;
    const plain = percent ? unpercentPlain(unescaped) : unescaped;
    return needles.some((needle) => plain.includes(needle)) ? replaced(plain) : scrubbed;
  };
}

const REDACTED_BYTES = Buffer.from(REDACTED, 'utf8');

/** `bytes` with every occurrence of `needle` replaced by `marker`. */
function replaceAll(bytes: Buffer, needle: Buffer, marker: Buffer): Buffer {
  let at = bytes.indexOf(needle);
  if (at === -1) return bytes;
  const parts: Buffer[] = [];
  let from = 0;
  while (at !== -1) {
    parts.push(bytes.subarray(from, at), marker);
    from = at + needle.length;
    at = bytes.indexOf(needle, from);
  }
  parts.push(bytes.subarray(from));
  return Buffer.concat(parts);
}

/**
 * A body's escapes spelled the one way a secret's forms are: `\uXXXX` of a character JSON never
 * needs escaped (and a surrogate pair) decoded, `\/` decoded, `\u0022` and `\u005c` written
 * `\"` and `\\`; every other escape kept, so JSON stays JSON with the same value. One pass over
 * the bytes, whatever the body's shape.
 */
function unescapePlain(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  let written = 0;
  let from = 0;
  let at = body.indexOf(BACKSLASH);
  while (at !== -1) {
    written += body.copy(out, written, from, at);
    const next = body[at + 1];
    const code = next === LOWER_U ? hex4(body, at + 2) : -1;
    const low =
      code >= 0xd800 && code <= 0xdbff && body[at + 6] === BACKSLASH && body[at + 7] === LOWER_U
        ? hex4(body, at + 8)
        : -1;
    if (next === SLASH) {
      out[written++] = SLASH;
      from = at + 2;
    } else if (code === 0x22 || code === 0x5c) {
      out[written++] = BACKSLASH;
      out[written++] = code;
      from = at + 6;
    } else if (low >= 0xdc00 && low <= 0xdfff) {
      written += out.write(String.fromCharCode(code, low), written, 'utf8');
      from = at + 12;
    } else if (code >= 0x20 && (code < 0xd800 || code > 0xdfff)) {
      if (code < 0x80) out[written++] = code;
      else written += out.write(String.fromCharCode(code), written, 'utf8');
      from = at + 6;
    } else {
      // Kept as written: the backslash and the character it escapes.
      from = Math.min(at + 2, body.length);
      written += body.copy(out, written, at, from);
    }
    at = body.indexOf(BACKSLASH, from);
  }
  written += body.copy(out, written, from);
  return out.subarray(0, written);
}

/**
 * A body's percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`, which no encoder
 * needs to escape) decoded, either case of hex digits; every other escape kept. One pass.
 */
function unpercentPlain(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  let written = 0;
  let from = 0;
  let at = body.indexOf(PERCENT);
  while (at !== -1) {
    written += body.copy(out, written, from, at);
    const high = hexDigit(body[at + 1]);
    const low = hexDigit(body[at + 2]);
    const code = high >= 0 && low >= 0 ? high * 16 + low : -1;
    if (code >= 0 && UNRESERVED.test(String.fromCharCode(code))) {
      out[written++] = code;
      from = at + 3;
    } else {
      out[written++] = PERCENT;
      from = at + 1;
    }
    at = body.indexOf(PERCENT, from);
  }
  written += body.copy(out, written, from);
  return out.subarray(0, written);
}

const PERCENT = 0x25;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

const BACKSLASH = 0x5c;
const LOWER_U = 0x75;
const SLASH = 0x2f;

/** The value of one hex digit (either case), or -1. */
function hexDigit(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** The value of four hex digits at `at`, or -1. */
function hex4(bytes: Buffer, at: number): number {
  if (at + 4 > bytes.length) return -1;
  let value = 0;
  for (let k = at; k < at + 4; k++) {
    const digit = hexDigit(bytes[k]);
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

interface Scrubbing {
  /** Every form of the secrets, longest first (none left half-replaced by a shorter one). */
  readonly forms: readonly string[];
  readonly needles: readonly Buffer[];
}

function needlesOf(forms: Iterable<string>): Scrubbing {
  const sorted = [...new Set(forms)].sort((a, b) => b.length - a.length);
  return { forms: sorted, needles: sorted.map((f) => Buffer.from(f, 'utf8')) };
}

/**
 * A credential's forms, worked out once per credential object rather than for every response on
 * the hot path (held weakly: gone with the credential).
 */
const scrubbings = new WeakMap<CloudflareCredential, Scrubbing>();
function scrubbingOf(credential: CloudflareCredential): Scrubbing {
  let scrubbing = scrubbings.get(credential);
  if (!scrubbing) {
    scrubbing = needlesOf(credentialSecrets(credential).flatMap(secretForms));
    scrubbings.set(credential, scrubbing);
  }
  return scrubbing;
}

const API_TOKEN_SHAPE = /^[A-Za-z0-9_-]{20,255}$/;
const GLOBAL_API_KEY_SHAPE = /^[0-9a-f]{37}$/;
const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function shapeError(field: string, message: string): WardenError {
  return new WardenError('invalid_request', `${field}: ${message}`, { field });
}

/**
 * Cheap shape checks before a credential is sent anywhere, with messages that name
 * the field and the fix but never echo the value.
 */
export function assertCredentialShape(credential: CloudflareCredential): void {
  if (credential.type === 'api_token') {
    if (!API_TOKEN_SHAPE.test(credential.apiToken)) {
      throw shapeError(
        'authorization.api_token',
        'does not look like a Cloudflare API token (20-255 characters of A-Z, a-z, 0-9, "-" and "_"); paste the token value, not its id or a "Bearer " header',
      );
    }
    return;
  }
  if (!EMAIL_SHAPE.test(credential.email) || credential.email.length > 254) {
    throw shapeError(
      'authorization.email',
      'must be the email address of the Cloudflare user that owns the Global API Key',
    );
  }
  if (!GLOBAL_API_KEY_SHAPE.test(credential.apiKey)) {
    throw shapeError(
      'authorization.api_key',
      'does not look like a Cloudflare Global API Key (37 lowercase hexadecimal characters); for an API token use {"type": "api_token"}',
    );
  }
}
