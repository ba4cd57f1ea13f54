import { useState } from 'react';
import { api, query } from '../api.ts';
import { ErrorNote, Status } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';
import type { Sink, SinkHealth } from '../types.ts';

interface Delivery {
  id: string;
  event_id: string;
  status: string;
  attempts: number;
  last_error: string | null;
  next_attempt_at: string;
  created_at: string;
}

function SinkCard({
  sink,
  health,
  onChange,
}: {
  sink: Sink;
  health: SinkHealth | undefined;
  onChange: () => void;
}) {
  const failed = useLoad(`failed:${sink.id}`, () =>
    api<{ deliveries: Delivery[] }>(
      'GET',
      `/api/v1/audit/sinks/${encodeURIComponent(sink.id)}/deliveries${query({ status: 'failed', limit: 50 })}`,
    ),
  );
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const retry = () =>
    api<{ retried: number }>(
      'POST',
      `/api/v1/audit/sinks/${encodeURIComponent(sink.id)}/deliveries/retry`,
      {},
    ).then(
      (r) => {
        setMessage(`${r.retried} deliveries queued again.`);
        failed.reload();
        onChange();
      },
      (e: Error) => setError(e),
    );
  return (
    <section className="card" aria-label={`Sink ${sink.name}`}>
      <h2>
        {sink.name} <span className="muted">({sink.type})</span>
      </h2>
      <p>
        <span className={`pill ${sink.enabled ? 'good' : 'bad'}`}>
          {sink.enabled ? 'enabled' : 'disabled'}
        </span>{' '}
        {health
          ? `${health.delivered} delivered, ${health.pending} pending, ${health.failed} failed; last delivery ${formatTime(health.last_delivered_at)}`
          : 'Nothing sent yet.'}
      </p>
      {health?.last_error && <p className="muted">Last error: {health.last_error}</p>}
      <h3>Failed deliveries</h3>
      <ErrorNote error={failed.error ?? error} />
      {failed.data?.deliveries.length === 0 && <p>None.</p>}
      {failed.data && failed.data.deliveries.length > 0 && (
        <>
          <table>
            <thead>
              <tr>
                <th scope="col">Delivery</th>
                <th scope="col">Event</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last error</th>
              </tr>
            </thead>
            <tbody>
              {failed.data.deliveries.map((d) => (
                <tr key={d.id}>
                  <td className="mono">{d.id}</td>
                  <td className="mono">{d.event_id}</td>
                  <td>{d.attempts}</td>
                  <td>{d.last_error ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <button type="button" onClick={() => void retry()}>
            Retry failed deliveries
          </button>
        </>
      )}
      {message && (
        <p className="notice" role="status">
          {message}
        </p>
      )}
    </section>
  );
}

export default function Sinks() {
  const sinks = useLoad('sinks', () => api<{ sinks: Sink[] }>('GET', '/api/v1/audit/sinks'));
  const health = useLoad('health', () => api<{ sink_health: SinkHealth[] }>('GET', '/console/api/overview'));
  return (
    <>
      <h1>SIEM sinks</h1>
      <ErrorNote error={sinks.error} />
      <Status loading={sinks.loading} />
      {sinks.data?.sinks.length === 0 && (
        <p className="card">
          No sink yet: add one with <code>POST /api/v1/audit/sinks</code> (webhook, Splunk HEC or syslog).
        </p>
      )}
      {sinks.data?.sinks.map((s) => (
        <SinkCard
          key={s.id}
          sink={s}
          health={health.data?.sink_health.find((h) => h.sink_id === s.id)}
          onChange={health.reload}
        />
      ))}
    </>
  );
}
