/** Network-level and server-availability failures, as opposed to bad SQL or constraint violations. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
]);

/**
 * The server answers but will not write: a read-only transaction (a standby, or
 * `default_transaction_read_only`) or a privilege the role lacks. Like an outage for the caller
 * (503), and the connection that saw it is not reused: the fix usually applies to new sessions.
 */
const WRITE_REFUSED_CODES = new Set(['25006', '42501']);

function codesOf(error: unknown): string[] {
  const codes: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    if (typeof e !== 'object') break;
    const { code } = e as { code?: unknown };
    if (typeof code === 'string') codes.push(code);
    if (e instanceof AggregateError) for (const inner of e.errors) codes.push(...codesOf(inner));
    e = (e as { cause?: unknown }).cause;
  }
  return codes;
}

export function isDatabaseWriteRefused(error: unknown): boolean {
  return codesOf(error).some((code) => WRITE_REFUSED_CODES.has(code));
}

export function isDatabaseUnavailable(error: unknown): boolean {
  if (isDatabaseWriteRefused(error)) return true;
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    if (typeof e !== 'object') return false;
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
    if (
      typeof message === 'string' &&
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|PGlite is closed/i.test(
        message,
      )
    ) {
      return true;
    }
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

/**
 * A transaction that lost a race PostgreSQL settles by aborting it: a deadlock, a serialization
 * failure, or an audit row routed to the default partition while its day's partition was being
 * created (23514). Running the whole transaction again succeeds.
 */
const CONFLICT_CODES = new Set(['40001', '40P01', '23514']);

export function isRetryableConflict(error: unknown): boolean {
  return codesOf(error).some((code) => CONFLICT_CODES.has(code));
}

/** Runs a transaction, again (up to `attempts` times in all) when it lost such a race. */
export async function withConflictRetry<T>(run: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (attempt >= attempts || !isRetryableConflict(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt + Math.random() * 40));
    }
  }
}
