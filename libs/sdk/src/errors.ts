/**
 * A non-2xx answer from Warden: `{"error": {"code", "message", "field"?}}` plus the HTTP
 * status and the `x-request-id` to quote to an operator. Tool failures are not errors
 * of this kind: `execute_tool` answers them with 200 and `error` in the body.
 */
export class WardenApiError extends Error {
  override readonly name = 'WardenApiError';
  readonly status: number;
  /** Warden's machine-readable code, e.g. `invalid_request`, `unauthorized`, `not_found`. */
  readonly code: string;
  /** The offending input field for a 400, e.g. `identifier` or `params.account_id`. */
  readonly field: string | undefined;
  readonly requestId: string | undefined;
  /** Seconds to wait from `Retry-After` (429 budget exhausted, some 503s). */
  readonly retryAfterSeconds: number | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    field?: string | undefined;
    requestId?: string | undefined;
    retryAfterSeconds?: number | undefined;
  }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.field = init.field;
    this.requestId = init.requestId;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }
}

const MAX_FOREIGN_BODY_CHARS = 200;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function retryAfter(response: Response): number | undefined {
  const header = response.headers.get('retry-after');
  if (header === null) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/**
 * Builds the error from what openapi-fetch parsed (JSON, or the raw text when the body
 * was not JSON, e.g. a load balancer's HTML page). `secrets` are cut out of every string
 * the error carries: Warden never echoes the API key, but a proxy in between might.
 */
export function toWardenApiError(
  response: Response,
  body: unknown,
  secrets: readonly string[],
): WardenApiError {
  const redact = (text: string): string =>
    secrets.reduce((out, secret) => (secret ? out.split(secret).join('[redacted]') : out), text);
  const envelope = isRecord(body) && isRecord(body.error) ? body.error : null;
  const requestId =
    (envelope && typeof envelope.request_id === 'string' ? envelope.request_id : undefined) ??
    response.headers.get('x-request-id') ??
    undefined;
  if (envelope && typeof envelope.code === 'string' && typeof envelope.message === 'string') {
    return new WardenApiError({
      status: response.status,
      code: redact(envelope.code),
      message: redact(envelope.message),
      field: typeof envelope.field === 'string' ? redact(envelope.field) : undefined,
      requestId,
      retryAfterSeconds: retryAfter(response),
    });
  }
  // Not Warden's envelope: something between the client and Warden answered.
  const text = typeof body === 'string' ? body.trim().slice(0, MAX_FOREIGN_BODY_CHARS) : '';
  return new WardenApiError({
    status: response.status,
    code: `http_${response.status}`,
    message: redact(
      `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${text ? `: ${text}` : ''}`,
    ),
    requestId,
    retryAfterSeconds: retryAfter(response),
  });
}
