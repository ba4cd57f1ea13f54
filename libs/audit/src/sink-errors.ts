/**
 * A failed delivery to a SIEM sink. Its message is safe to store and show to the tenant
 * (failed deliveries are listed through the API): it names the sink type, the status or the
 * network error code and a short, redacted excerpt of the receiver's answer, and never a
 * secret, a token or the sink URL (webhook URLs often carry a token in their path).
 */
export class SinkDeliveryError extends Error {
  /** True when the same batch may succeed later (receiver down, throttled, timed out). */
  readonly retryable: boolean;
  /** HTTP status of the receiver's answer, when there was one. */
  readonly status: number | null;
  /** The receiver's `Retry-After`, in milliseconds. */
  readonly retryAfterMs: number | null;

  constructor(
    message: string,
    details: { retryable: boolean; status?: number | null; retryAfterMs?: number | null },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SinkDeliveryError';
    this.retryable = details.retryable;
    this.status = details.status ?? null;
    this.retryAfterMs = details.retryAfterMs ?? null;
  }
}

export function isSinkDeliveryError(value: unknown): value is SinkDeliveryError {
  return value instanceof SinkDeliveryError;
}

/** Raised by the network guard; a destination Warden must not reach will not become reachable. */
export const PRIVATE_ADDRESS_CODE = 'EPRIVATEADDRESS';

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const { code, name } = error as { code?: unknown; name?: unknown };
    // The only abort signal on a delivery is its deadline.
    if (name === 'TimeoutError' || name === 'AbortError') return 'ETIMEDOUT';
    if (typeof code === 'string') return code;
  }
  return 'network error';
}

/** A failure below HTTP (DNS, connect, TLS, reset, timeout): worth retrying, unless it was the guard. */
export function networkFailure(sink: string, error: unknown): SinkDeliveryError {
  if (isSinkDeliveryError(error)) return error;
  const code = errorCode(error);
  return new SinkDeliveryError(
    `${sink} delivery failed: ${code}`,
    { retryable: code !== PRIVATE_ADDRESS_CODE },
    { cause: error },
  );
}

/** Removes every occurrence of the sink's secrets from text that came from outside. */
function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join('[redacted]');
  }
  return out;
}

const EXCERPT_CHARS = 200;

export function responseExcerpt(body: string, secrets: readonly string[]): string {
  const flat = body.replace(/\p{Cc}+/gu, ' ').trim();
  // Redact before cutting, so a secret straddling the cut cannot leak its first half.
  const safe = redact(flat, secrets);
  return safe.length > EXCERPT_CHARS ? `${safe.slice(0, EXCERPT_CHARS)}...` : safe;
}

function parseRetryAfterMs(value: string | undefined, now: Date): number | null {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now.getTime());
}

/**
 * 408, 429 and 5xx are the receiver's temporary trouble. Redirects are refused rather than
 * followed (a redirect could point anywhere, including inside our network). Any other 4xx
 * means the request itself is wrong (bad token, bad URL): retrying cannot help.
 */
export function httpFailure(
  sink: string,
  response: { status: number; body: string; retryAfter?: string | undefined },
  secrets: readonly string[],
  now: Date,
): SinkDeliveryError {
  const { status } = response;
  const retryable = status === 408 || status === 429 || status >= 500;
  const excerpt = responseExcerpt(response.body, secrets);
  const reason =
    status >= 300 && status < 400 ? 'redirects are not followed' : excerpt === '' ? undefined : excerpt;
  return new SinkDeliveryError(`${sink} receiver answered HTTP ${status}${reason ? `: ${reason}` : ''}`, {
    retryable,
    status,
    retryAfterMs: retryable ? parseRetryAfterMs(response.retryAfter, now) : null,
  });
}
