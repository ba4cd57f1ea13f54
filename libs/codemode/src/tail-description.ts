// Loaded by the sandbox children (search), which may read only this package: no imports.
/**
 * `tail` in execute: a live Worker tail session, opened, collected and deleted by the host.
 * What `cloudflare_search` shows as `spec.tail`; kept short (it is read, not the tool definitions).
 */
export const TAIL_DESCRIPTION = {
  summary:
    'Live Worker logs in execute: the host starts a tail (POST /accounts/{account_id}/workers/scripts/{script}/tails; token needs Workers Tail Read), collects events for `seconds` (at most 60) or until maxEvents (default 100, at most 1000), and always deletes it. accountId defaults to the call account. Policy sees it as GET and POST on that tails path: read_only allows it, a deny rule on the path refuses it.',
  methods: {
    "tail.worker({script, seconds, filters?: {outcome?: ['ok'|'exception'|...], method?: ['GET'], status?: ['ok'|'error'|'canceled'], sample_rate?: 0..1, query?: 'text'}, maxEvents?, accountId?})":
      '{script, events: [trace event {outcome, logs, exceptions, event, eventTimestamp} | {truncated: true, bytes, preview}], truncated?: true, ended, durationMs, deleted}',
  },
} as const;
