import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from './fake-cloudflare.access.ts';
import {
  invalidApiToken,
  invalidRequestHeaders,
  missingAuthHeaders,
  unknownGlobalKey,
} from './fake-cloudflare.errors.ts';
import { GLOBAL_API_KEY_SHAPE, TOKEN_VALUE_SHAPE } from './fake-cloudflare.ids.ts';
import type { FakeCloudflareState } from './fake-cloudflare.state.ts';

const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const BEARER = /^Bearer +(\S+) *$/;

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function sameSecret(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

/**
 * `Authorization: Bearer <token>` (preferred when present) or `X-Auth-Email` + `X-Auth-Key`.
 * Disabled, expired and not-yet-valid tokens are refused with 1000 like unknown ones, except
 * where `inactiveTokens` is set: the verify endpoints answer with the token's status instead.
 */
export function authenticate(
  headers: IncomingHttpHeaders,
  state: FakeCloudflareState,
  now: Date,
  inactiveTokens: boolean,
): Principal {
  const authorization = single(headers.authorization);
  if (authorization !== undefined) {
    const value = BEARER.exec(authorization)?.[1];
    if (value === undefined || !TOKEN_VALUE_SHAPE.test(value)) {
      throw invalidRequestHeaders(6111, 'Invalid format for Authorization header');
    }
    const token = state.findTokenByValue(value);
    if (!token) throw invalidApiToken();
    const usable =
      state.tokenStatus(token, now) === 'active' &&
      (token.notBefore === null || token.notBefore.getTime() <= now.getTime());
    if (!usable && !inactiveTokens) throw invalidApiToken();
    if (token.owner.kind === 'user') {
      const user = state.users.get(token.owner.userId);
      if (!user) throw invalidApiToken();
      return { kind: 'user_token', user, token };
    }
    const account = state.accounts.get(token.owner.accountId);
    if (!account) throw invalidApiToken();
    return { kind: 'account_token', account, token };
  }

  const email = single(headers['x-auth-email']);
  const key = single(headers['x-auth-key']);
  if (email === undefined || key === undefined) throw missingAuthHeaders();
  if (!EMAIL_SHAPE.test(email.trim()))
    throw invalidRequestHeaders(6102, 'Invalid format for X-Auth-Email header');
  if (!GLOBAL_API_KEY_SHAPE.test(key))
    throw invalidRequestHeaders(6103, 'Invalid format for X-Auth-Key header');
  const user = state.findUserByEmail(email);
  if (!user || !sameSecret(user.globalApiKey, key)) throw unknownGlobalKey();
  return { kind: 'global_api_key', user };
}
