import type { ErrorCode } from '@warden/core';
import { WardenError, assertNever, isWardenError } from '@warden/core';
import { isDatabaseUnavailable } from '@warden/db';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';

export interface WireError {
  readonly status: number;
  readonly body: {
    error: { code: string; message: string; field?: string; request_id?: string; details?: unknown };
  };
  readonly headers: Record<string, string>;
}

/** The one place error codes become HTTP statuses. Exhaustive over the ErrorCode union. */
export function httpStatus(code: ErrorCode): number {
  switch (code) {
    case 'invalid_request':
    case 'invalid_credential':
    case 'payload_too_large':
      return 400;
    case 'unauthenticated':
      return 401;
    case 'forbidden':
    case 'policy_denied':
      return 403;
    case 'not_found':
      return 404;
    case 'conflict':
      return 409;
    case 'rate_limited':
      return 429;
    case 'upstream_error':
      return 502;
    case 'unavailable':
      return 503;
    case 'upstream_timeout':
      return 504;
    case 'integrity_failure':
    case 'internal':
      return 500;
    default:
      return assertNever(code);
  }
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
  validationContext?: string;
}

/** Fastify's own request errors, restated in our vocabulary with the field and the fix. */
function fromFastify(error: FastifyLikeError, bodyLimit: number): WardenError | null {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new WardenError(
        'invalid_request',
        'body: is not valid JSON; send a JSON object with Content-Type: application/json',
        {
          field: 'body',
        },
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new WardenError(
        'payload_too_large',
        `body: exceeds the ${bodyLimit}-byte limit; send a smaller body`,
        {
          field: 'body',
        },
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new WardenError('invalid_request', 'body: unsupported Content-Type; send application/json', {
        field: 'content-type',
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new WardenError('invalid_request', 'body: Content-Length does not match the body', {
        field: 'body',
      });
    default:
      break;
  }
  if (error instanceof SyntaxError && (error as FastifyLikeError).statusCode === 400) {
    return new WardenError('invalid_request', 'body: is not valid JSON', { field: 'body' });
  }
  return null;
}

function fromValidation(error: unknown): WardenError | null {
  if (!hasZodFastifySchemaValidationErrors(error)) return null;
  const context = (error as { validationContext?: string }).validationContext ?? 'body';
  const first = error.validation[0];
  const pointer = first?.instancePath?.replace(/^\//, '').replace(/\//g, '.') ?? '';
  // Body fields are named as they appear in the JSON (`authorization.api_token`);
  // query and path parameters by their own names. An unknown key is named itself.
  const unknownKeys =
    first?.keyword === 'unrecognized_keys' ? (first.params as { keys?: string[] }).keys : undefined;
  const base = pointer || (context === 'body' ? 'body' : context);
  const field = unknownKeys?.[0] ? (pointer ? `${pointer}.${unknownKeys[0]}` : unknownKeys[0]) : base;
  const message = unknownKeys?.length
    ? 'is not a recognised field; remove it or check its spelling'
    : (first?.message ?? 'is invalid');
  const more = error.validation.length > 1 ? ` (and ${error.validation.length - 1} more problem(s))` : '';
  return new WardenError('invalid_request', `${field}: ${message}${more}`, { field });
}

export function toWireError(error: unknown, options: { requestId: string; bodyLimit: number }): WireError {
  let mapped: WardenError;
  if (isWardenError(error)) mapped = error;
  else {
    mapped =
      fromValidation(error) ??
      fromFastify(error as FastifyLikeError, options.bodyLimit) ??
      (isDatabaseUnavailable(error)
        ? new WardenError('unavailable', 'the database is unavailable; retry shortly', {
            dependency: 'database',
          })
        : new WardenError(
            'internal',
            `internal error; quote request id ${options.requestId} when reporting it`,
          ));
  }
  const status = httpStatus(mapped.code);
  const headers: Record<string, string> = {};
  if (mapped.code === 'rate_limited' && typeof mapped.details.retryAfterSeconds === 'number') {
    headers['retry-after'] = String(Math.max(1, Math.ceil(mapped.details.retryAfterSeconds)));
  }
  if (mapped.code === 'unauthenticated') headers['www-authenticate'] = 'Bearer';
  // Integrity failures say only that: which check failed is for the server log.
  const message =
    mapped.code === 'integrity_failure'
      ? `the stored credential could not be decrypted; quote request id ${options.requestId} when reporting it`
      : mapped.message;
  return {
    status,
    headers,
    body: {
      error: {
        code: mapped.code,
        message,
        ...(typeof mapped.details.field === 'string' ? { field: mapped.details.field } : {}),
        ...(status >= 500 ? { request_id: options.requestId } : {}),
      },
    },
  };
}
