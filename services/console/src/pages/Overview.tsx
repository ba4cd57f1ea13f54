import { Link } from 'wouter';
import { ApiError, api, listAll } from '../api.ts';
import { ErrorNote, Gauge, Status } from '../components/common.tsx';
import { HourlyChart } from '../components/HourlyChart.tsx';
import { formatTime, useLoad } from '../hooks.ts';
import type { Approval, ConnectedAccount, Sink, SinkHealth } from '../types.ts';

interface OverviewData {
  readonly hours: Array<{ hour: string; calls: number; errors: number }>;
  readonly top_identities: Array<{ identifier: string; calls: number; errors: number; last_call_at: string }>;
  readonly sink_health: SinkHealth[];
}

/** Pending approvals, or null where this Warden has no write approvals (the routes answer 404). */
export async function pendingApprovals(): Promise<Approval[] | null> {
  try {
    const r = await api<{ approvals: Approval[] }>('GET', '/api/v1/approvals?status=pending');
    return r.approvals;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return null;
    throw e;
  }
}

export default function Overview() {
  const overview = useLoad('overview', () => api<OverviewData>('GET', '/console/api/overview'));
  const accounts = useLoad('accounts', () =>
    listAll<ConnectedAccount>('/api/v1/connected_accounts', 'connected_accounts'),
  );
  const sinks = useLoad('sinks', () => api<{ sinks: Sink[] }>('GET', '/api/v1/audit/sinks'));
  const approvals = useLoad('approvals', pendingApprovals);

  const budgets = (accounts.data ?? [])
    .filter((a) => a.status === 'ACTIVE' && a.rate_budget)
    .sort(
      (a, b) =>
        a.rate_budget!.remaining / a.rate_budget!.capacity -
        b.rate_budget!.remaining / b.rate_budget!.capacity,
    )
    .slice(0, 5);

  return (
    <>
      <h1>Overview</h1>
      <section aria-labelledby="calls-heading" className="card">
        <h2 id="calls-heading">Calls per hour</h2>
        <ErrorNote error={overview.error} />
        <Status loading={overview.loading}>
          {overview.data && <HourlyChart hours={overview.data.hours} />}
        </Status>
      </section>
      <div className="grid">
        <section aria-labelledby="top-heading" className="card">
          <h2 id="top-heading">Top identities (24 h)</h2>
          {overview.data && overview.data.top_identities.length === 0 && <p>No tool calls yet.</p>}
          {overview.data && overview.data.top_identities.length > 0 && (
            <table>
              <thead>
                <tr>
                  <th scope="col">Identity</th>
                  <th scope="col">Calls</th>
                  <th scope="col">Errors</th>
                  <th scope="col">Last call</th>
                </tr>
              </thead>
              <tbody>
                {overview.data.top_identities.map((t) => (
                  <tr key={t.identifier}>
                    <td>{t.identifier}</td>
                    <td>{t.calls}</td>
                    <td>{t.errors}</td>
                    <td>{formatTime(t.last_call_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section aria-labelledby="budget-heading" className="card">
          <h2 id="budget-heading">Budgets closest to exhaustion</h2>
          <ErrorNote error={accounts.error} />
          {accounts.data && budgets.length === 0 && <p>No active account.</p>}
          <ul className="plain">
            {budgets.map((a) => (
              <li key={a.id}>
                <span className="mono">{a.identifier}</span>{' '}
                <Gauge
                  remaining={a.rate_budget!.remaining}
                  capacity={a.rate_budget!.capacity}
                  label={`Rate budget left for ${a.identifier}`}
                />
              </li>
            ))}
          </ul>
        </section>
        <section aria-labelledby="approvals-heading" className="card">
          <h2 id="approvals-heading">Pending approvals</h2>
          <ErrorNote error={approvals.error} />
          {approvals.data === null && <p>Write approvals are not available on this Warden.</p>}
          {approvals.data && (
            <p>
              <Link href="/approvals">{approvals.data.length} waiting for a decision</Link>
            </p>
          )}
        </section>
        <section aria-labelledby="siem-heading" className="card">
          <h2 id="siem-heading">SIEM delivery health</h2>
          <ErrorNote error={sinks.error} />
          {sinks.data && sinks.data.sinks.length === 0 && <p>No SIEM sink configured.</p>}
          <ul className="plain">
            {sinks.data?.sinks.map((s) => {
              const h = overview.data?.sink_health.find((x) => x.sink_id === s.id);
              return (
                <li key={s.id}>
                  <strong>{s.name}</strong> ({s.type}):{' '}
                  <span className={h && h.failed > 0 ? 'bad' : 'good'}>
                    {h
                      ? `${h.delivered} delivered, ${h.pending} pending, ${h.failed} failed`
                      : 'nothing sent yet'}
                  </span>
                </li>
              );
            })}
          </ul>
        </section>
      </div>
    </>
  );
}
