/**
 * `drop`: the connection is closed without an answer (a reset, as when a proxy dies).
 * `hang`: the request is accepted and never answered (a black hole; the client times out).
 */
export type FakeUnreachableMode = 'drop' | 'hang';

export interface FakeCloudflareFaults {
  /**
   * The next `count` requests answer `status` (a 5xx by default 503) before any other processing,
   * with a `Retry-After` header when `retryAfterSeconds` is given (a 429 as Cloudflare sends it),
   * and `code` as the error's code in the body (the status by default; 971 is the API-wide limit's).
   */
  failNext(count: number, status?: number, options?: { retryAfterSeconds?: number; code?: number }): void;
  /** Delay every answer by this many milliseconds (0 to stop). */
  setLatencyMs(ms: number): void;
  /** `true` means `drop`; `false` answers again (hung requests are then closed). */
  setUnreachable(mode: boolean | FakeUnreachableMode): void;
  /**
   * The next `count` requests answer 400 with an error that quotes the credential they carried
   * (as it is and Base64-encoded), as some APIs do when they echo a malformed header.
   */
  echoCredentialNext(count: number): void;
  /** Clears every fault. */
  reset(): void;
}

export class FaultController implements FakeCloudflareFaults {
  #failures: Array<{ status: number; remaining: number; retryAfterSeconds: number | null; code: number }> =
    [];
  #latencyMs = 0;
  #unreachable: FakeUnreachableMode | null = null;
  #echoes = 0;
  readonly #onReachable: () => void;

  constructor(onReachable: () => void) {
    this.#onReachable = onReachable;
  }

  get latencyMs(): number {
    return this.#latencyMs;
  }

  get unreachable(): FakeUnreachableMode | null {
    return this.#unreachable;
  }

  failNext(count: number, status = 503, options: { retryAfterSeconds?: number; code?: number } = {}): void {
    if (!Number.isInteger(count) || count < 0)
      throw new Error('fake Cloudflare: failNext count must be >= 0');
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new Error('fake Cloudflare: failNext status must be an HTTP error status');
    }
    const retryAfterSeconds = options.retryAfterSeconds ?? null;
    if (retryAfterSeconds !== null && !(Number.isInteger(retryAfterSeconds) && retryAfterSeconds >= 0)) {
      throw new Error('fake Cloudflare: failNext retryAfterSeconds must be a whole number >= 0');
    }
    const code = options.code ?? status;
    if (!Number.isInteger(code)) throw new Error('fake Cloudflare: failNext code must be a whole number');
    if (count > 0) this.#failures.push({ status, remaining: count, retryAfterSeconds, code });
  }

  setLatencyMs(ms: number): void {
    if (!(ms >= 0)) throw new Error('fake Cloudflare: latency must be >= 0');
    this.#latencyMs = ms;
  }

  setUnreachable(mode: boolean | FakeUnreachableMode): void {
    const next = mode === true ? 'drop' : mode === false ? null : mode;
    const wasUnreachable = this.#unreachable !== null;
    this.#unreachable = next;
    if (wasUnreachable && next === null) this.#onReachable();
  }

  echoCredentialNext(count: number): void {
    if (!Number.isInteger(count) || count < 0)
      throw new Error('fake Cloudflare: echoCredentialNext count must be >= 0');
    this.#echoes += count;
  }

  /** Whether the next request echoes its credential, consuming one. */
  takeEcho(): boolean {
    if (this.#echoes === 0) return false;
    this.#echoes -= 1;
    return true;
  }

  reset(): void {
    this.#failures = [];
    this.#echoes = 0;
    this.#latencyMs = 0;
    this.setUnreachable(false);
  }

  /** The next injected failure (its status, Retry-After and error code), consuming it, or null. */
  takeFailure(): { status: number; retryAfterSeconds: number | null; code: number } | null {
    const first = this.#failures[0];
    if (!first) return null;
    first.remaining -= 1;
    if (first.remaining === 0) this.#failures.shift();
    return { status: first.status, retryAfterSeconds: first.retryAfterSeconds, code: first.code };
  }
}
