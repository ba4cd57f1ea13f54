/** One entry of Cloudflare's `errors`/`messages` arrays. */
export interface CfMessage {
  readonly code: number;
  readonly message: string;
  readonly error_chain?: readonly CfMessage[];
}

/**
 * A refusal answered with Cloudflare's envelope. Route handlers throw it; the server
 * turns it into `{success: false, errors, messages: [], result: null}`.
 */
export class CfError extends Error {
  readonly status: number;
  readonly errors: readonly CfMessage[];
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, errors: readonly CfMessage[], headers: Readonly<Record<string, string>> = {}) {
    super(errors.map((e) => `${e.code}: ${e.message}`).join('; '));
    this.name = 'CfError';
    this.status = status;
    this.errors = errors;
    this.headers = headers;
  }
}

/*
 * Codes and messages as the real API answers them (seen in public bug reports and
 * Cloudflare's docs). Where the real code is unknown the helper says so.
 */

export function noRoute(): CfError {
  return new CfError(404, [{ code: 7000, message: 'No route for that URI' }]);
}

/** Unknown or foreign account/zone ids read as a routing failure, as on the real API. */
export function couldNotRoute(path: string): CfError {
  return new CfError(404, [
    { code: 7003, message: `Could not route to ${path}, perhaps your object identifier is invalid?` },
  ]);
}

/** Not seen documented; 10405 is what Warden's tests expect for a wrong method on a known route. */
export function methodNotAllowed(method: string, allowed: readonly string[]): CfError {
  return new CfError(405, [{ code: 10405, message: `Method ${method} not allowed for this endpoint` }], {
    allow: allowed.join(', '),
  });
}

export function invalidApiToken(): CfError {
  return new CfError(401, [{ code: 1000, message: 'Invalid API Token' }]);
}

export function missingAuthHeaders(): CfError {
  return new CfError(400, [
    { code: 9106, message: 'Missing X-Auth-Key, X-Auth-Email or Authorization headers' },
  ]);
}

export function invalidRequestHeaders(code: number, message: string): CfError {
  return new CfError(400, [
    { code: 6003, message: 'Invalid request headers', error_chain: [{ code, message }] },
  ]);
}

export function unknownGlobalKey(): CfError {
  return new CfError(403, [{ code: 9103, message: 'Unknown X-Auth-Key or X-Auth-Email' }]);
}

/** A valid credential without the permission (or the resource scope) the route needs. */
export function authenticationError(): CfError {
  return new CfError(403, [{ code: 10000, message: 'Authentication error' }]);
}

export function unauthorizedResource(): CfError {
  return new CfError(403, [{ code: 9109, message: 'Unauthorized to access requested resource' }]);
}

export function rateLimited(retryAfterSeconds: number): CfError {
  return new CfError(
    429,
    [{ code: 971, message: 'Please wait and consider throttling your request speed' }],
    {
      'retry-after': String(retryAfterSeconds),
    },
  );
}

export function malformedJson(): CfError {
  return new CfError(400, [{ code: 6007, message: 'Malformed JSON in request body' }]);
}

/** Generic bad input; the real API uses many per-service codes, this stands in where none is known. */
export function badRequest(code: number, message: string, status = 400): CfError {
  return new CfError(status, [{ code, message }]);
}
