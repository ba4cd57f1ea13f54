/**
 * Every failure that crosses a module boundary is a WardenError with a code from
 * this closed union. One mapper in the service turns codes into HTTP statuses and
 * MCP tool errors; `assertNever` there keeps the mapping exhaustive.
 */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_credential',
  'payload_too_large',
  'unauthenticated',
  'forbidden',
  'policy_denied',
  /** The principal that planned a write asked to decide it: another person must (separation of duties). */
  'self_approval',
  'not_found',
  'conflict',
  'rate_limited',
  'upstream_error',
  'upstream_timeout',
  'unavailable',
  'integrity_failure',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorDetails {
  /** The request field at fault, as a dotted path (`authorization.api_token`). */
  readonly field?: string;
  /** Seconds to wait before retrying (rate limits). */
  readonly retryAfterSeconds?: number;
  readonly [key: string]: unknown;
}

export class WardenError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WardenError';
    this.code = code;
    this.details = details;
  }
}

export function isWardenError(value: unknown): value is WardenError {
  return value instanceof WardenError;
}

export function invalidRequest(field: string, message: string): WardenError {
  return new WardenError('invalid_request', `${field}: ${message}`, { field });
}

export function notFound(what: string): WardenError {
  return new WardenError('not_found', `${what} not found`);
}

export function unavailable(dependency: string, cause?: unknown): WardenError {
  return new WardenError(
    'unavailable',
    `${dependency} is unavailable; retry shortly`,
    { dependency },
    { cause },
  );
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${String(value)}`);
}
