import { Token, parseList } from 'structured-headers';
import type { BareItem, Item, List, Parameters } from 'structured-headers';

/**
 * What Cloudflare's rate-limit headers said about the principal in one response (the IETF
 * draft's structured fields, as Cloudflare sends them):
 * `Ratelimit: "default";r=50;t=30` (remaining quota, seconds until the window resets) and
 * `Ratelimit-Policy: "default";q=1200;w=300` (quota per window).
 */
export interface CloudflareQuota {
  /** The limit's name (`default`), to match the policy item. */
  readonly name: string;
  readonly remaining: number;
  readonly resetSeconds: number;
  /** `q` of the policy item of the same name, when Cloudflare sent one. */
  readonly quota: number | null;
  /** `w` of that policy item. */
  readonly windowSeconds: number | null;
}

/** A bogus header cannot hold a principal back longer than this. */
export const MAX_RESET_SECONDS = 3600;
const MAX_COUNT = 1_000_000_000;

function nonNegativeInteger(value: BareItem | undefined, max: number): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max ? value : null;
}

function itemName(value: BareItem): string | null {
  // The draft uses sf-strings ("default"); accept tokens too, since both are common in the wild.
  if (typeof value === 'string') return value;
  return value instanceof Token ? value.toString() : null;
}

/** The items of a structured list; anything that does not parse is no information. */
function items(header: string | null | undefined): Array<{ name: string; params: Parameters }> {
  if (!header) return [];
  let list: List;
  try {
    list = parseList(header);
  } catch {
    return [];
  }
  const out: Array<{ name: string; params: Parameters }> = [];
  for (const member of list) {
    // Inner lists have an array as their value; the draft never sends them.
    if (Array.isArray(member[0])) continue;
    const [value, params] = member as Item;
    const name = itemName(value);
    if (name !== null) out.push({ name, params });
  }
  return out;
}

/**
 * The most restrictive limit in `Ratelimit` (fewest remaining, then the latest reset), with its
 * policy when `Ratelimit-Policy` names it. Null when the header is absent or says nothing usable:
 * Warden then relies on its own window alone.
 */
export function parseRateHeaders(
  rateLimit: string | null | undefined,
  rateLimitPolicy: string | null | undefined,
): CloudflareQuota | null {
  let best: { name: string; remaining: number; resetSeconds: number } | null = null;
  for (const { name, params } of items(rateLimit)) {
    const remaining = nonNegativeInteger(params.get('r'), MAX_COUNT);
    const reset = nonNegativeInteger(params.get('t'), Number.MAX_SAFE_INTEGER);
    if (remaining === null || reset === null) continue;
    const resetSeconds = Math.min(reset, MAX_RESET_SECONDS);
    if (
      !best ||
      remaining < best.remaining ||
      (remaining === best.remaining && resetSeconds > best.resetSeconds)
    ) {
      best = { name, remaining, resetSeconds };
    }
  }
  if (!best) return null;
  const policy = items(rateLimitPolicy).find((item) => item.name === best.name);
  const quota = nonNegativeInteger(policy?.params.get('q'), MAX_COUNT);
  const window = nonNegativeInteger(policy?.params.get('w'), MAX_RESET_SECONDS);
  return { ...best, quota, windowSeconds: window === 0 ? null : window };
}
