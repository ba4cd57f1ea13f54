import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { FormEvent } from 'react';
import { createColumnHelper, flexRender, getCoreRowModel, useReactTable } from '@tanstack/react-table';
import { useVirtualizer } from '@tanstack/react-virtual';
import { api, query } from '../api.ts';
import { ErrorNote, SelectField } from '../components/common.tsx';
import { AuditDrawer } from '../components/AuditDrawer.tsx';
import { formatTime } from '../hooks.ts';
import type { ExplorerRow } from '../types.ts';

const BLOCK = 200;
const ROW_HEIGHT = 34;
const OUTCOMES = ['success', 'error', 'refused', 'rate_limited', 'timeout', 'pending', 'unknown'];
const ANY: Array<string | { value: string; label: string }> = [{ value: '', label: 'any' }];
const TOOLS = ['cloudflare_search', 'cloudflare_execute'];
const KINDS = ['tool_call', 'upstream_request', 'connected_account', 'lifecycle', 'offboarding', 'mcp_oauth'];

interface Filters {
  from: string;
  to: string;
  identifier: string;
  tool_name: string;
  outcome: string;
  kind: string;
  agent_run_id: string;
}
const EMPTY: Filters = {
  from: '',
  to: '',
  identifier: '',
  tool_name: '',
  outcome: '',
  kind: '',
  agent_run_id: '',
};

/** A `datetime-local` value (the browser's zone) as ISO 8601, or undefined. */
function iso(local: string): string | undefined {
  return local ? new Date(local).toISOString() : undefined;
}

function filterQuery(f: Filters) {
  return {
    from: iso(f.from),
    to: iso(f.to),
    identifier: f.identifier.trim() || undefined,
    tool_name: f.tool_name || undefined,
    outcome: f.outcome || undefined,
    kind: f.kind || undefined,
    agent_run_id: f.agent_run_id.trim() || undefined,
  };
}

type Slot = ExplorerRow | null;
const column = createColumnHelper<Slot>();

interface VerifyReport {
  ok: boolean;
  checked: number;
  expired: number;
  problems: Array<{ seq: number; kind: string; detail: string }>;
  intents_without_outcome: Array<{ seq: number; id: string }>;
  unknown_outcomes: number;
}

export default function Audit() {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [total, setTotal] = useState<number | null>(null);
  const [snapshot, setSnapshot] = useState<number | null>(null);
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<Error | null>(null);
  const [selected, setSelected] = useState<ExplorerRow | null>(null);
  const [verify, setVerify] = useState<VerifyReport | 'running' | null>(null);
  const blocks = useRef(new Map<number, ExplorerRow[]>());
  const inflight = useRef(new Set<number>());
  const generation = useRef(0);
  const scroller = useRef<HTMLDivElement>(null);

  // A new filter starts over: the first window also fixes the snapshot and counts the matches.
  useEffect(() => {
    const gen = ++generation.current;
    blocks.current = new Map();
    inflight.current = new Set();
    setTotal(null);
    setError(null);
    api<{ snapshot_seq: number; total: number; rows: ExplorerRow[] }>(
      'GET',
      `/console/api/audit/rows${query({ ...filterQuery(filters), offset: 0, limit: BLOCK })}`,
    ).then(
      (r) => {
        if (gen !== generation.current) return;
        blocks.current.set(0, r.rows);
        setSnapshot(r.snapshot_seq);
        setTotal(r.total);
        setVersion((v) => v + 1);
      },
      (e: Error) => gen === generation.current && setError(e),
    );
  }, [filters]);

  const loadBlock = useCallback(
    (block: number) => {
      if (snapshot === null || blocks.current.has(block) || inflight.current.has(block)) return;
      const gen = generation.current;
      inflight.current.add(block);
      api<{ rows: ExplorerRow[] }>(
        'GET',
        `/console/api/audit/rows${query({ ...filterQuery(filters), snapshot_seq: snapshot, offset: block * BLOCK, limit: BLOCK })}`,
      ).then(
        (r) => {
          if (gen !== generation.current) return;
          inflight.current.delete(block);
          blocks.current.set(block, r.rows);
          setVersion((v) => v + 1);
        },
        (e: Error) => {
          inflight.current.delete(block);
          if (gen === generation.current) setError(e);
        },
      );
    },
    [filters, snapshot],
  );

  const columns = useMemo(
    () => [
      column.accessor((r) => r?.occurred_at, {
        id: 'time',
        header: 'Time',
        cell: (c) =>
          c.row.original ? (
            <button type="button" className="link" onClick={() => setSelected(c.row.original)}>
              {formatTime(c.row.original.occurred_at)}
            </button>
          ) : (
            <span className="muted">…</span>
          ),
      }),
      column.accessor((r) => r?.kind, { id: 'kind', header: 'Kind' }),
      column.accessor((r) => r?.identifier, { id: 'identity', header: 'Identity' }),
      column.accessor((r) => r?.tool_name ?? r?.action, { id: 'what', header: 'Tool / action' }),
      column.accessor((r) => (r?.method ? `${r.method} ${r.path ?? ''}` : ''), {
        id: 'request',
        header: 'Upstream request',
      }),
      column.accessor((r) => r?.status, { id: 'status', header: 'Status' }),
      column.accessor((r) => r?.outcome, {
        id: 'outcome',
        header: 'Outcome',
        cell: (c) =>
          c.getValue() ? <span className={`pill outcome-${c.getValue()}`}>{c.getValue()}</span> : null,
      }),
      column.accessor((r) => (r?.duration_ms != null ? `${r.duration_ms} ms` : ''), {
        id: 'duration',
        header: 'Duration',
      }),
    ],
    [],
  );

  const virtualizer = useVirtualizer({
    count: total ?? 0,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
  });
  const items = virtualizer.getVirtualItems();
  // The table holds only the rows in view (tens, not 100,000): scrolling costs the same at any size.
  const visible = useMemo<Slot[]>(
    () =>
      items.map((item) => blocks.current.get(Math.floor(item.index / BLOCK))?.[item.index % BLOCK] ?? null),
    // `version` says when blocks.current changed.
    [items, version],
  );
  const table = useReactTable({ data: visible, columns, getCoreRowModel: getCoreRowModel() });
  const rows = table.getRowModel().rows;

  useEffect(() => {
    const first = items[0]?.index;
    const last = items[items.length - 1]?.index;
    if (first === undefined || last === undefined) return;
    for (let b = Math.floor(first / BLOCK); b <= Math.floor(last / BLOCK); b++) loadBlock(b);
  }, [items, loadBlock]);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    scroller.current?.scrollTo({ top: 0 });
    setFilters(draft);
  };
  const field = (name: keyof Filters) => ({
    value: draft[name],
    onChange: (e: { target: { value: string } }) => setDraft({ ...draft, [name]: e.target.value }),
  });
  const select = (name: keyof Filters) => ({
    value: draft[name],
    onChange: (value: string) => setDraft({ ...draft, [name]: value }),
  });

  const exportRange = query({
    from: iso(filters.from) ?? new Date(Date.now() - 24 * 3_600_000).toISOString(),
    to: iso(filters.to),
  });
  const padTop = items[0]?.start ?? 0;
  const padBottom = items.length > 0 ? virtualizer.getTotalSize() - (items[items.length - 1]?.end ?? 0) : 0;

  return (
    <>
      <h1>Audit explorer</h1>
      <form className="card filters" onSubmit={apply} aria-label="Audit filters">
        <label>
          From
          <input type="datetime-local" {...field('from')} />
        </label>
        <label>
          To
          <input type="datetime-local" {...field('to')} />
        </label>
        <label>
          Identity
          <input {...field('identifier')} placeholder="alice@acme.com" />
        </label>
        <SelectField label="Tool" options={ANY.concat(TOOLS)} {...select('tool_name')} />
        <SelectField label="Outcome" options={ANY.concat(OUTCOMES)} {...select('outcome')} />
        <SelectField label="Kind" options={ANY.concat(KINDS)} {...select('kind')} />
        <label>
          Agent run
          <input {...field('agent_run_id')} />
        </label>
        <div className="actions">
          <button type="submit">Apply</button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setDraft(EMPTY);
              setFilters(EMPTY);
            }}
          >
            Clear
          </button>
        </div>
      </form>
      <div className="toolbar">
        <p role="status" className="count">
          {total === null ? 'Loading events…' : `${total.toLocaleString('en-US')} events`}
        </p>
        <span className="spacer" />
        <span>Export:</span>
        <a className="button secondary" href={`/api/v1/audit/export${exportRange}&format=ndjson`} download>
          NDJSON
        </a>
        <a className="button secondary" href={`/api/v1/audit/export${exportRange}&format=ocsf`} download>
          OCSF
        </a>
        <a className="button secondary" href={`/api/v1/audit/export${exportRange}&format=cef`} download>
          CEF
        </a>
        <button
          type="button"
          className="secondary"
          onClick={() => {
            setVerify('running');
            api<VerifyReport>('GET', '/api/v1/audit/verify').then(setVerify, (e: Error) => {
              setVerify(null);
              setError(e);
            });
          }}
        >
          Verify chain
        </button>
      </div>
      {verify === 'running' && <p role="status">Verifying the hash chain…</p>}
      {verify && verify !== 'running' && (
        <p role="status" className={verify.ok ? 'notice' : 'error'} data-testid="verify-result">
          {verify.ok ? 'Chain intact' : 'Chain broken'}: {verify.checked} records checked
          {verify.expired ? `, ${verify.expired} expired by retention` : ''},{' '}
          {verify.intents_without_outcome.length} intents without outcome, {verify.unknown_outcomes} unknown
          outcomes
          {verify.problems.length > 0 &&
            `; first problem at seq ${verify.problems[0]!.seq}: ${verify.problems[0]!.detail}`}
        </p>
      )}
      <ErrorNote error={error} />
      <div className="table-scroll" ref={scroller} tabIndex={0} aria-label="Audit events, newest first">
        <table className="virtual">
          <colgroup>
            <col className="w-time" />
            <col className="w-kind" />
            <col className="w-identity" />
            <col className="w-what" />
            <col />
            <col className="w-status" />
            <col className="w-outcome" />
            <col className="w-duration" />
          </colgroup>
          <thead>
            {table.getHeaderGroups().map((group) => (
              <tr key={group.id}>
                {group.headers.map((h) => (
                  <th key={h.id} scope="col">
                    {flexRender(h.column.columnDef.header, h.getContext())}
                  </th>
                ))}
              </tr>
            ))}
          </thead>
          <tbody>
            {padTop > 0 && (
              <tr aria-hidden="true">
                <td colSpan={8} style={{ height: padTop, padding: 0, border: 0 }} />
              </tr>
            )}
            {items.map((item, position) => {
              const row = rows[position];
              if (!row) return null;
              return (
                <tr key={item.key} style={{ height: ROW_HEIGHT }} data-row={item.index}>
                  {row.getVisibleCells().map((cell) => (
                    <td key={cell.id}>{flexRender(cell.column.columnDef.cell, cell.getContext())}</td>
                  ))}
                </tr>
              );
            })}
            {padBottom > 0 && (
              <tr aria-hidden="true">
                <td colSpan={8} style={{ height: padBottom, padding: 0, border: 0 }} />
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {selected && <AuditDrawer row={selected} onClose={() => setSelected(null)} />}
    </>
  );
}
