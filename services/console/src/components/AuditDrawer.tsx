import { useEffect, useRef } from 'react';
import { api, query } from '../api.ts';
import { formatTime, useLoad } from '../hooks.ts';
import type { AuditEvent, ExplorerRow } from '../types.ts';
import { ErrorNote, Status } from './common.tsx';

interface UpstreamPair {
  readonly intent: AuditEvent | null;
  readonly outcome: AuditEvent | null;
}

/** Intents (written before sending) and outcomes (naming their intent), paired in send order. */
function pairUpstream(events: AuditEvent[]): UpstreamPair[] {
  const upstream = events.filter((e) => e.kind === 'upstream_request');
  const outcomes = new Map(upstream.filter((e) => e.intent_id).map((e) => [e.intent_id!, e]));
  const pairs: UpstreamPair[] = [];
  const paired = new Set<string>();
  for (const e of upstream) {
    if (e.outcome === 'pending' && !e.intent_id) {
      const outcome = outcomes.get(e.id) ?? null;
      if (outcome) paired.add(outcome.id);
      pairs.push({ intent: e, outcome });
    }
  }
  for (const e of upstream) {
    if (!paired.has(e.id) && !(e.outcome === 'pending' && !e.intent_id))
      pairs.push({ intent: null, outcome: e });
  }
  return pairs;
}

async function loadDetail(row: ExplorerRow) {
  const { event } = await api<{ event: AuditEvent }>(
    'GET',
    `/console/api/audit/events/${encodeURIComponent(row.id)}`,
  );
  if (!event.execution_id) return { event, execution: [event] };
  const execution: AuditEvent[] = [];
  let token: string | null = null;
  do {
    const page: { events: AuditEvent[]; next_page_token: string | null } = await api(
      'GET',
      `/api/v1/audit/events${query({ execution_id: event.execution_id, page_size: 100, page_token: token })}`,
    );
    execution.push(...page.events);
    token = page.next_page_token;
  } while (token && execution.length < 500);
  return { event, execution };
}

export function AuditDrawer({ row, onClose }: { row: ExplorerRow; onClose: () => void }) {
  const detail = useLoad(row.id, () => loadDetail(row));
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [row.id]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);

  const toolCall = detail.data?.execution.find((e) => e.kind === 'tool_call') ?? null;
  const pairs = detail.data ? pairUpstream(detail.data.execution) : [];
  const event = detail.data?.event;

  return (
    <aside className="drawer" aria-labelledby="drawer-title">
      <div className="drawer-head">
        <h2 id="drawer-title" tabIndex={-1} ref={heading}>
          {row.kind} · {row.action}
        </h2>
        <button type="button" className="secondary" onClick={onClose}>
          Close
        </button>
      </div>
      <ErrorNote error={detail.error} />
      <Status loading={detail.loading} />
      {event && (
        <dl className="facts">
          <dt>Time</dt>
          <dd>{formatTime(event.occurred_at)}</dd>
          <dt>Outcome</dt>
          <dd>
            <span className={`pill outcome-${event.outcome}`}>{event.outcome}</span>
            {event.error && ` ${event.error.code}: ${event.error.message}`}
          </dd>
          <dt>Identity</dt>
          <dd>{event.identifier ?? '—'}</dd>
          <dt>Caller</dt>
          <dd>
            {event.caller.type} {event.caller.id ?? ''}{' '}
            {event.caller.client_name ? `(${event.caller.client_name})` : ''}
          </dd>
          {event.execution_id && (
            <>
              <dt>Execution</dt>
              <dd className="mono">{event.execution_id}</dd>
            </>
          )}
          {event.agent_run_id && (
            <>
              <dt>Agent run</dt>
              <dd className="mono">{event.agent_run_id}</dd>
            </>
          )}
          <dt>Hash</dt>
          <dd className="mono small">{event.hash}</dd>
        </dl>
      )}
      {event?.details && (
        <>
          <h3>Details</h3>
          <pre className="code">{JSON.stringify(event.details, null, 2)}</pre>
        </>
      )}
      {toolCall && (
        <>
          <h3>Code</h3>
          {toolCall.code ? (
            <pre className="code" aria-label="Agent code">
              {toolCall.code}
            </pre>
          ) : (
            <p>Not captured (SHA-256 {toolCall.code_sha256 ?? 'unknown'}).</p>
          )}
        </>
      )}
      {detail.data && event?.execution_id && (
        <>
          <h3>Upstream requests ({pairs.length})</h3>
          {pairs.length === 0 && <p>This call sent nothing to Cloudflare.</p>}
          <ol className="upstream" aria-label="Upstream requests">
            {pairs.map((p) => {
              const head = p.intent ?? p.outcome!;
              const outcome = p.outcome;
              return (
                <li key={head.id}>
                  <span className="mono">
                    {head.upstream?.method} {head.upstream?.path}
                  </span>
                  <span className={`pill outcome-${outcome?.outcome ?? 'pending'}`}>
                    {outcome ? outcome.outcome : 'no outcome recorded'}
                  </span>
                  {outcome?.upstream?.status != null && <span>HTTP {outcome.upstream.status}</span>}
                  {outcome?.duration_ms != null && <span>{outcome.duration_ms} ms</span>}
                  {outcome?.upstream?.cf_ray && (
                    <span className="muted">cf-ray {outcome.upstream.cf_ray}</span>
                  )}
                  {p.intent && <span className="muted small">intent {p.intent.id}</span>}
                </li>
              );
            })}
          </ol>
        </>
      )}
    </aside>
  );
}
