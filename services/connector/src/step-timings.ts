/**
 * How long the steps a tool call waits on besides its own code took: Cloudflare's answers and the
 * audit trail's commits. The Cloudflare client and the audit store report them here and /metrics
 * keeps them as histograms, so an operator can tell Warden's time from Cloudflare's and
 * PostgreSQL's (`warden_http_request_duration_seconds` is the whole).
 */
export type StepTiming =
  | { readonly step: 'upstream'; readonly ms: number; readonly status: number | null }
  | { readonly step: 'audit_append'; readonly ms: number; readonly committed: boolean };

export interface StepTimings {
  record(timing: StepTiming): void;
  /** Hears every timing recorded from now on; returns the unsubscribe. */
  onEvent(listener: (timing: StepTiming) => void): () => void;
}

export function createStepTimings(): StepTimings {
  const listeners = new Set<(timing: StepTiming) => void>();
  return {
    record(timing) {
      for (const listener of listeners) listener(timing);
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}
