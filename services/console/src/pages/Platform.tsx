import { useState } from 'react';
import { api } from '../api.ts';
import { ErrorNote, Status } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';

interface SpecStatus {
  loaded: boolean;
  version: string | null;
  source: string | null;
  loaded_at: string | null;
  operations: number;
  sandboxes: { size: number; alive: number; ready: number } | null;
}
interface KeyStatus {
  provider: string;
  current_key_id: string;
  data_keys_by_key: Record<string, number>;
  legacy_format: number;
}

export default function Platform() {
  const spec = useLoad('spec', () => api<SpecStatus>('GET', '/admin/v1/spec'));
  const keys = useLoad('keys', () => api<KeyStatus>('GET', '/admin/v1/keys'));
  const [reload, setReload] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const reloadSpec = () =>
    api<{ version: string; changed: boolean }>('POST', '/admin/v1/spec/reload').then((r) => {
      setReload(
        r.changed ? `Loaded a new version (${r.version.slice(0, 12)}).` : 'The document is unchanged.',
      );
      spec.reload();
    }, setError);
  return (
    <>
      <h1>Spec and keys</h1>
      <section className="card" aria-labelledby="spec-heading">
        <h2 id="spec-heading">Cloudflare OpenAPI document</h2>
        <ErrorNote error={spec.error ?? error} />
        <Status loading={spec.loading && !spec.data} />
        {spec.data && (
          <dl className="facts">
            <dt>State</dt>
            <dd>
              <span className={`pill ${spec.data.loaded ? 'good' : 'bad'}`}>
                {spec.data.loaded ? 'loaded' : 'not loaded'}
              </span>
            </dd>
            <dt>Version</dt>
            <dd className="mono">{spec.data.version?.slice(0, 16) ?? '—'}</dd>
            <dt>Source</dt>
            <dd className="mono small">{spec.data.source ?? '—'}</dd>
            <dt>Loaded</dt>
            <dd>{formatTime(spec.data.loaded_at)}</dd>
            <dt>Operations</dt>
            <dd>{spec.data.operations}</dd>
            <dt>Sandboxes</dt>
            <dd>
              {spec.data.sandboxes
                ? `${spec.data.sandboxes.ready} ready of ${spec.data.sandboxes.size} (${spec.data.sandboxes.alive} alive)`
                : '—'}
            </dd>
          </dl>
        )}
        <button type="button" onClick={() => void reloadSpec()}>
          Reload spec
        </button>
        {reload && (
          <p className="notice" role="status">
            {reload}
          </p>
        )}
      </section>
      <section className="card" aria-labelledby="keys-heading">
        <h2 id="keys-heading">Key rotation</h2>
        <ErrorNote error={keys.error} />
        {keys.data && (
          <>
            <p>
              Provider <strong>{keys.data.provider}</strong>, current key{' '}
              <span className="mono">{keys.data.current_key_id}</span>
            </p>
            <table>
              <thead>
                <tr>
                  <th scope="col">Key-encryption key</th>
                  <th scope="col">Data keys wrapped</th>
                  <th scope="col">State</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(keys.data.data_keys_by_key).map(([key, n]) => (
                  <tr key={key}>
                    <td className="mono">{key}</td>
                    <td>{n}</td>
                    <td>{key === keys.data!.current_key_id ? 'current' : 'old: run `warden keys rotate`'}</td>
                  </tr>
                ))}
                {Object.keys(keys.data.data_keys_by_key).length === 0 && (
                  <tr>
                    <td colSpan={3}>No vaulted credential yet.</td>
                  </tr>
                )}
              </tbody>
            </table>
            {keys.data.legacy_format > 0 && (
              <p>
                {keys.data.legacy_format} sealed secret(s) are still in the first seal format (not bound to
                their kind): run `warden keys rotate` to seal them again.
              </p>
            )}
          </>
        )}
      </section>
    </>
  );
}
