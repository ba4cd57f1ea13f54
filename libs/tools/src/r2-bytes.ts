import { WardenError } from '@warden/core';

/**
 * A bound on the R2 object bytes this process holds at once (bodies being read from R2 or sent
 * to it, until the call's result is built), across the process and per tenant, so concurrent
 * `r2.get`s each under the per-get limit cannot grow the connector without bound and one tenant
 * cannot take the whole of it. A transfer that does not fit waits (granted in arrival order as
 * room is made) up to `waitMs`; then it is refused with `rate_limited` saying what to do.
 */
export interface R2ByteBudgetOptions {
  /** Every tenant together (`R2_MAX_BYTES_IN_FLIGHT`). */
  readonly processBytes: number;
  /** One tenant (`R2_MAX_TENANT_BYTES_IN_FLIGHT`); at most `processBytes`. */
  readonly tenantBytes: number;
  /** The longest a transfer waits for room (`R2_BYTES_WAIT_MS`). */
  readonly waitMs: number;
}

export interface R2ByteBudget {
  /**
   * Holds `bytes` for `tenantId` until the returned release is called (idempotent). Rejects with
   * `rate_limited` when no room is made within the wait, or when `signal` aborts.
   */
  reserve(tenantId: string, bytes: number, op: string, signal?: AbortSignal): Promise<() => void>;
  /** Bytes held now: every tenant, and one tenant's. */
  held(tenantId?: string): number;
}

interface Waiter {
  readonly tenantId: string;
  readonly bytes: number;
  readonly grant: () => void;
}

export function createR2ByteBudget(options: R2ByteBudgetOptions): R2ByteBudget {
  let total = 0;
  const byTenant = new Map<string, number>();
  const waiting: Waiter[] = [];

  const fits = (tenantId: string, bytes: number) =>
    total + bytes <= options.processBytes && (byTenant.get(tenantId) ?? 0) + bytes <= options.tenantBytes;

  function take(tenantId: string, bytes: number): () => void {
    total += bytes;
    byTenant.set(tenantId, (byTenant.get(tenantId) ?? 0) + bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      total -= bytes;
      const left = (byTenant.get(tenantId) ?? 0) - bytes;
      if (left > 0) byTenant.set(tenantId, left);
      else byTenant.delete(tenantId);
      for (let i = 0; i < waiting.length;) {
        const waiter = waiting[i] as Waiter;
        if (fits(waiter.tenantId, waiter.bytes)) {
          waiting.splice(i, 1);
          waiter.grant();
        } else i++;
      }
    };
  }

  function refusal(tenantId: string, bytes: number, op: string): WardenError {
    const tenant = byTenant.get(tenantId) ?? 0;
    const which =
      tenant + bytes > options.tenantBytes
        ? `this tenant's R2 transfers already hold ${tenant} of ${options.tenantBytes} bytes (R2_MAX_TENANT_BYTES_IN_FLIGHT)`
        : `R2 transfers already hold ${total} of ${options.processBytes} bytes on this server (R2_MAX_BYTES_IN_FLIGHT)`;
    return new WardenError(
      'rate_limited',
      `r2.${op}: ${bytes} more bytes did not fit within ${options.waitMs} ms: ${which}; run fewer r2 calls at once (await them in turn) or read smaller ranges, then retry`,
      { retryAfterSeconds: 1 },
    );
  }

  return {
    reserve(tenantId, bytes, op, signal) {
      if (bytes > options.tenantBytes) return Promise.reject(refusal(tenantId, bytes, op));
      if (fits(tenantId, bytes)) return Promise.resolve(take(tenantId, bytes));
      return new Promise((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', aborted);
        };
        const waiter: Waiter = {
          tenantId,
          bytes,
          grant: () => {
            done();
            resolve(take(tenantId, bytes));
          },
        };
        const leave = (error: WardenError) => {
          const at = waiting.indexOf(waiter);
          if (at >= 0) waiting.splice(at, 1);
          done();
          reject(error);
        };
        const aborted = () =>
          leave(new WardenError('upstream_error', `r2.${op}: the request to R2 was cancelled`));
        const timer = setTimeout(() => leave(refusal(tenantId, bytes, op)), options.waitMs);
        if (signal?.aborted) return aborted();
        signal?.addEventListener('abort', aborted, { once: true });
        waiting.push(waiter);
      });
    },
    held: (tenantId) => (tenantId === undefined ? total : (byTenant.get(tenantId) ?? 0)),
  };
}
