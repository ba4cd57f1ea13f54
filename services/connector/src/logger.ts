import { SECRET_FIELD_NAMES, isWardenError } from '@warden/core';
import type { Logger } from '@warden/core';
import pino from 'pino';
import type { DestinationStream, Logger as PinoLogger } from 'pino';

const SECRET_KEYS = new Set(SECRET_FIELD_NAMES.map((k) => k.toLowerCase()));
const REDACTED = '[redacted]';

/**
 * Replaces the value of every credential-bearing field, at any depth, before a log
 * line is written. pino's own `redact` only handles fixed paths; this covers
 * whatever object a library or error happens to hand the logger.
 */
export function scrub(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  if (value instanceof Error) {
    return {
      type: value.name,
      message: value.message,
      ...scrubObject(value as unknown as Record<string, unknown>, depth),
    };
  }
  return scrubObject(value as Record<string, unknown>, depth);
}

function scrubObject(obj: Record<string, unknown>, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    out[k] = SECRET_KEYS.has(k.toLowerCase()) ? REDACTED : scrub(v, depth + 1);
  }
  return out;
}

export function createLogger(options: { level: string; destination?: DestinationStream }): PinoLogger {
  return pino(
    {
      level: options.level,
      base: { service: 'warden' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-auth-key"]',
          'req.headers["x-auth-email"]',
          'req.headers.cookie',
          '*.authorization',
          '*.api_token',
          '*.api_key',
        ],
        censor: REDACTED,
      },
      serializers: {
        // The query string is left out: identifiers are fine, but nothing a client
        // mistakenly puts there (a token) should reach the logs.
        req: (req: { method?: string; url?: string; id?: string }) => ({
          method: req.method,
          path: req.url?.split('?')[0],
          id: req.id,
        }),
        res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
        err: (err: Error) => {
          const { code } = err as { code?: unknown };
          return {
            type: err.name,
            message: err.message,
            ...(code !== undefined ? { code } : {}),
            // Stack frames name functions and files, never values; expected domain errors need none.
            ...(isWardenError(err) ? {} : { stack: err.stack }),
          };
        },
      },
      formatters: {
        // pino runs this before the serializers: req, res and err have serializers of their
        // own that pick safe fields (a deep copy would lose their getters, e.g. statusCode).
        log: (obj) => {
          const { req, res, err, ...rest } = obj as Record<string, unknown>;
          return {
            ...(scrub(rest) as Record<string, unknown>),
            ...(req !== undefined ? { req } : {}),
            ...(res !== undefined ? { res } : {}),
            ...(err !== undefined ? { err } : {}),
          };
        },
      },
    },
    options.destination,
  );
}

/** The libs see only @warden/core's Logger interface. */
export function asLibLogger(logger: PinoLogger): Logger {
  return logger as unknown as Logger;
}
