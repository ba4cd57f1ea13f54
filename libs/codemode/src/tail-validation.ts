import { WardenError, hasControlCharacters } from '@warden/core';
import type { TailRequest } from './sandbox.types.ts';

/** The longest tail one `tail.worker` call may run. */
export const MAX_TAIL_SECONDS = 60;
export const DEFAULT_TAIL_MAX_EVENTS = 100;
export const MAX_TAIL_EVENTS = 1000;

const FIELDS = new Set(['tail', 'accountId', 'script', 'seconds', 'filters', 'maxEvents']);
const FILTER_FIELDS = new Set(['outcome', 'method', 'status', 'sample_rate', 'query']);
/** Worker script names as Cloudflare accepts them. */
const SCRIPT = /^[A-Za-z0-9_-]{1,63}$/;
const ACCOUNT = /^[A-Za-z0-9]{1,64}$/;
const OUTCOMES = ['ok', 'canceled', 'exception', 'exceededCpu', 'exceededMemory', 'unknown'];
const STATUSES = ['ok', 'error', 'canceled'] as const;
const METHOD = /^[A-Z]{1,16}$/;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Whether a payload from the sandbox is a `tail.worker` call (`{tail: 'worker', …}`). */
export function isTailPayload(payload: unknown): boolean {
  return isPlainObject(payload) && Object.hasOwn(payload, 'tail');
}

function refuse(field: string, message: string): WardenError {
  return new WardenError('invalid_request', `tail.worker: ${field} ${message}`, { field });
}

function list(field: string, value: unknown, allowed: (item: string) => boolean, hint: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 10) {
    throw refuse(field, `must be a list of 1 to 10 values (${hint})`);
  }
  return value.map((item) => {
    if (typeof item !== 'string' || !allowed(item))
      throw refuse(field, `has ${JSON.stringify(item)}; use ${hint}`);
    return item;
  });
}

/**
 * Checks a `tail.worker` payload from the (untrusted) sandbox and returns the request the host
 * runs; anything else is refused naming the field and the fix.
 */
export function validateTailRequest(payload: unknown): TailRequest {
  if (!isPlainObject(payload) || payload.tail !== 'worker') {
    throw new WardenError('invalid_request', 'tail: only tail.worker({script, seconds, …}) exists', {
      field: 'tail',
    });
  }
  for (const key of Object.keys(payload)) {
    if (!FIELDS.has(key)) {
      throw refuse(key, 'is not a parameter; use script, seconds, filters, maxEvents or accountId');
    }
  }
  const { script, seconds, accountId } = payload;
  if (typeof script !== 'string' || !SCRIPT.test(script)) {
    throw refuse('script', 'must be the name of a Worker (letters, digits, "-" and "_", at most 63)');
  }
  if (
    typeof seconds !== 'number' ||
    !Number.isSafeInteger(seconds) ||
    seconds < 1 ||
    seconds > MAX_TAIL_SECONDS
  ) {
    throw refuse('seconds', `must be a whole number from 1 to ${MAX_TAIL_SECONDS}`);
  }
  if (
    accountId !== null &&
    accountId !== undefined &&
    (typeof accountId !== 'string' || !ACCOUNT.test(accountId))
  ) {
    throw refuse('accountId', 'must be a Cloudflare account id (32 hex characters)');
  }
  let maxEvents = DEFAULT_TAIL_MAX_EVENTS;
  if (payload.maxEvents !== undefined) {
    const value = payload.maxEvents;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_TAIL_EVENTS) {
      throw refuse('maxEvents', `must be a whole number from 1 to ${MAX_TAIL_EVENTS}`);
    }
    maxEvents = value;
  }
  const filters: {
    outcome?: string[];
    method?: string[];
    status?: (typeof STATUSES)[number][];
    sampleRate?: number;
    query?: string;
  } = {};
  if (payload.filters !== undefined) {
    const raw = payload.filters;
    if (!isPlainObject(raw))
      throw refuse('filters', 'must be an object {outcome?, method?, status?, sample_rate?, query?}');
    for (const key of Object.keys(raw)) {
      if (!FILTER_FIELDS.has(key)) {
        throw refuse(`filters.${key}`, 'is not a filter; use outcome, method, status, sample_rate or query');
      }
    }
    if (raw.outcome !== undefined) {
      filters.outcome = list(
        'filters.outcome',
        raw.outcome,
        (o) => OUTCOMES.includes(o),
        OUTCOMES.join(', '),
      );
    }
    if (raw.method !== undefined) {
      filters.method = list(
        'filters.method',
        raw.method,
        (m) => METHOD.test(m),
        'HTTP methods such as "GET"',
      );
    }
    if (raw.status !== undefined) {
      filters.status = list(
        'filters.status',
        raw.status,
        (s) => (STATUSES as readonly string[]).includes(s),
        STATUSES.join(', '),
      ) as (typeof STATUSES)[number][];
    }
    if (raw.sample_rate !== undefined) {
      const rate = raw.sample_rate;
      if (typeof rate !== 'number' || !(rate > 0 && rate < 1)) {
        throw refuse('filters.sample_rate', 'must be a number between 0 and 1 (exclusive), e.g. 0.25');
      }
      filters.sampleRate = rate;
    }
    if (raw.query !== undefined) {
      const query = raw.query;
      if (typeof query !== 'string' || query === '' || query.length > 200 || hasControlCharacters(query)) {
        throw refuse('filters.query', 'must be a text of 1 to 200 characters');
      }
      filters.query = query;
    }
  }
  return {
    accountId: typeof accountId === 'string' ? accountId : null,
    script,
    seconds,
    maxEvents,
    filters,
  };
}
