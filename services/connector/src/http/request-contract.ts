import { WardenError } from '@warden/core';
import type { FastifyRequest, RouteOptions } from 'fastify';
import { z } from 'zod';
import { fieldName } from './error-mapper.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * Top-level body fields that are data, not text for the database: agent code may hold any
     * string (NUL included); whoever stores it escapes it. Everything else is checked.
     */
    rawTextFields?: readonly string[];
  }
}

/** Why PostgreSQL could not store this text (NUL in text and jsonb, lone surrogates in jsonb), or null. */
export function unstorableText(value: string): string | null {
  if (value.includes('\u0000')) return 'must not contain the NUL character (U+0000)';
  if (!value.isWellFormed())
    return 'must be valid Unicode (no unpaired UTF-16 surrogates; percent-encoded bytes must be UTF-8)';
  return null;
}

/**
 * The query string, percent-decoded strictly. A name or value whose bytes are not UTF-8 (an
 * encoded lone surrogate, `%FF`) keeps an unpaired surrogate, so the request contract refuses
 * it naming the parameter, where a lenient parser would pass the raw text on as if it were sent.
 * Repeated names give arrays, as Fastify's own parser does.
 */
export function parseQueryString(text: string): Record<string, string | string[]> {
  const decode = (part: string): string => {
    const spaced = part.replaceAll('+', ' ');
    try {
      return decodeURIComponent(spaced);
    } catch {
      return `${spaced}\ud800`;
    }
  };
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const at = pair.indexOf('=');
    const name = decode(at < 0 ? pair : pair.slice(0, at));
    const value = at < 0 ? '' : decode(pair.slice(at + 1));
    const seen = out[name];
    out[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return out;
}

type Part = 'params' | 'querystring' | 'body';

/**
 * The first string (or key) PostgreSQL would refuse, as a 400 naming its field. Iterative: a
 * body within the size limit can nest deeper than the call stack.
 */
function checkText(part: Part, root: unknown, skip: ReadonlySet<string>): WardenError | null {
  const stack: Array<{ value: unknown; path: PropertyKey[] }> = [{ value: root, path: [] }];
  while (stack.length > 0) {
    const { value, path } = stack.pop() as { value: unknown; path: PropertyKey[] };
    if (typeof value === 'string') {
      const problem = unstorableText(value);
      if (problem) {
        const field = fieldName(part, path);
        return new WardenError('invalid_request', `${field}: ${problem}`, { field });
      }
    } else if (Array.isArray(value)) {
      value.forEach((item, index) => stack.push({ value: item, path: [...path, index] }));
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        if (path.length === 0 && skip.has(key)) continue;
        const problem = unstorableText(key);
        if (problem) {
          const field = fieldName(part, path);
          return new WardenError('invalid_request', `${field}: has a field name that ${problem}`, { field });
        }
        stack.push({ value: item, path: [...path, key] });
      }
    }
  }
  return null;
}

const NO_SKIP: ReadonlySet<string> = new Set();

/**
 * Refuses (400 naming the field) any parameter, query value or body string PostgreSQL cannot
 * store. Every documented route has it through `applyRequestContract`; hidden JSON routes (the
 * console's) add it as a hook.
 */
export async function refuseUnstorableText(request: FastifyRequest): Promise<void> {
  const raw = new Set(request.routeOptions.config.rawTextFields ?? []);
  const problem =
    checkText('params', request.params, NO_SKIP) ??
    checkText('querystring', request.query, NO_SKIP) ??
    checkText('body', request.body, raw);
  if (problem) throw problem;
}

/**
 * The documented API's request contract, applied to every route in /openapi.json from one place
 * (an `onRoute` hook): unknown query parameters are refused like unknown body fields, and no
 * text PostgreSQL cannot store gets past the edge (400 naming the field, never a 500 from the
 * database). Hidden routes (MCP transports, docs, metrics) speak their own protocols.
 */
export function applyRequestContract(route: RouteOptions): void {
  const schema = route.schema as { hide?: boolean; querystring?: unknown } | undefined;
  if (!schema || schema.hide) return;
  if (schema.querystring === undefined) schema.querystring = z.strictObject({});
  else if (schema.querystring instanceof z.ZodObject) schema.querystring = schema.querystring.strict();
  const existing = route.preValidation;
  route.preValidation = [
    ...(Array.isArray(existing) ? existing : existing ? [existing] : []),
    refuseUnstorableText,
  ];
}
