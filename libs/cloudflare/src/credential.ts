import { WardenError } from '@warden/core';
import { replaceSpans, secretFinder } from './secret-finder.ts';
import type { SecretFinder } from './secret-finder.ts';

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
 * percent-encoded; its UTF-16 (either byte order) in Base64; a hex secret (R2's derived secret)
 * also in upper case and as its raw bytes in Base64. `secretFinder` also reads a body with its escapes decoded, so a secret spelled with
 * them is found too. A secret stored otherwise transformed (compressed, split, another cipher) is
 * not found.
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
    // UTF-16 in Base64 (PowerShell's -EncodedCommand, .NET's Convert.ToBase64String(Encoding.Unicode…)).
    ...base64Forms(Buffer.from(secret, 'utf16le')),
    ...base64Forms(Buffer.from(secret, 'utf16le').swap16()),
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
 * A finder of `secrets` in every form `secretForms` knows, and as UTF-16 (either byte order), in
 * a body read as is and with its escapes decoded (see `secretFinder`).
 */
export function secretsFinder(secrets: Iterable<string>): SecretFinder {
  const unique = [...new Set(secrets)].filter((secret) => secret.length > 0);
  return secretFinder({
    forms: [...new Set(unique.flatMap(secretForms))].map((form) => Buffer.from(form, 'utf8')),
    wide: unique.map((secret) => {
      const utf16 = Buffer.from(secret, 'utf16le');
      return [utf16, Buffer.from(utf16).swap16()] as const;
    }),
    secrets: unique.map((secret) => Buffer.from(secret, 'utf8')),
  });
}

/**
 * A scrubber for the exact secret values of one credential, and of the other secrets a call
 * made with it may hold (`alsoSecrets`: the R2 secret access keys of `r2Secrets`): it replaces
 * every occurrence of any of their forms in a response body (or a tail event, or a header value)
 * before anything parses it, so no echo of a secret (Cloudflare quoting a header in an error, a
 * token listing its own value, a Worker logging its R2 key) reaches a result, an error message,
 * an audit record or a log line. Only the bytes that spell a secret are replaced: the rest of
 * the body comes back byte for byte, even if it is not UTF-8.
 */
export function credentialScrubber(
  credential: CloudflareCredential,
  alsoSecrets: readonly string[] = [],
): (body: Buffer) => Buffer {
  const finder =
    alsoSecrets.length === 0
      ? finderOf(credential)
      : secretsFinder([...credentialSecrets(credential), ...alsoSecrets]);
  return (body) => replaceSpans(body, finder.find(body), REDACTED_BYTES);
}

const REDACTED_BYTES = Buffer.from(REDACTED, 'utf8');

/**
 * A credential's finder, worked out once per credential object rather than for every response
 * on the hot path (held weakly: gone with the credential).
 */
const finders = new WeakMap<CloudflareCredential, SecretFinder>();
function finderOf(credential: CloudflareCredential): SecretFinder {
  let finder = finders.get(credential);
  if (!finder) {
    finder = secretsFinder(credentialSecrets(credential));
    finders.set(credential, finder);
  }
  return finder;
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
