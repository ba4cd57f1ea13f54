import { useState } from 'react';
import { api } from '../api.ts';
import { CardForm, CopyButton, ErrorNote, Status } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';

interface Tenant {
  id: string;
  name: string;
  created_at: string;
}
interface ApiKey {
  id: string;
  created_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
}

function Keys({ tenant }: { tenant: Tenant }) {
  const keys = useLoad(tenant.id, () =>
    api<{ api_keys: ApiKey[] }>('GET', `/admin/v1/tenants/${encodeURIComponent(tenant.id)}/api_keys`),
  );
  const [issued, setIssued] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const issue = () =>
    api<{ api_key: string }>('POST', `/admin/v1/tenants/${encodeURIComponent(tenant.id)}/api_keys`).then(
      (r) => {
        setIssued(r.api_key);
        keys.reload();
      },
      setError,
    );
  const revoke = (id: string) =>
    api(
      'DELETE',
      `/admin/v1/tenants/${encodeURIComponent(tenant.id)}/api_keys/${encodeURIComponent(id)}`,
    ).then(keys.reload, setError);
  return (
    <>
      <ErrorNote error={keys.error ?? error} />
      <Status loading={keys.loading && !keys.data} />
      {keys.data && (
        <table>
          <thead>
            <tr>
              <th scope="col">API key</th>
              <th scope="col">Created</th>
              <th scope="col">Last use</th>
              <th scope="col">State</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.data.api_keys.map((k) => (
              <tr key={k.id}>
                <td className="mono">{k.id}</td>
                <td>{formatTime(k.created_at)}</td>
                <td>{formatTime(k.last_used_at)}</td>
                <td>
                  <span className={`pill ${k.revoked_at ? 'bad' : 'good'}`}>
                    {k.revoked_at ? 'revoked' : 'active'}
                  </span>
                </td>
                <td>
                  {!k.revoked_at && (
                    <button type="button" className="danger" onClick={() => void revoke(k.id)}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <button type="button" className="secondary" onClick={() => void issue()}>
        Issue API key
      </button>
      {issued && (
        <p className="notice" role="status">
          New key (shown once): <code>{issued}</code> <CopyButton text={issued} label="Copy key" />
        </p>
      )}
    </>
  );
}

export default function Tenants() {
  const tenants = useLoad('tenants', () => api<{ tenants: Tenant[] }>('GET', '/admin/v1/tenants'));
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  return (
    <>
      <h1>Tenants</h1>
      <CardForm
        title="Create a tenant"
        submitLabel="Create"
        action={async () => {
          const r = await api<{ tenant: Tenant; api_key: string }>('POST', '/admin/v1/tenants', { name });
          setCreated({ name: r.tenant.name, key: r.api_key });
          setName('');
          tenants.reload();
        }}
        after={
          created && (
            <p className="notice" role="status">
              {created.name}: first API key (shown once) <code>{created.key}</code>{' '}
              <CopyButton text={created.key} label="Copy key" />
            </p>
          )
        }
      >
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required />
        </label>
      </CardForm>
      <ErrorNote error={tenants.error} />
      <Status loading={tenants.loading && !tenants.data} />
      {tenants.data?.tenants.map((t) => (
        <section key={t.id} className="card" aria-label={`Tenant ${t.name}`}>
          <h2>
            {t.name} <span className="muted mono">{t.id}</span>
          </h2>
          <p className="muted">Created {formatTime(t.created_at)}</p>
          <Keys tenant={t} />
        </section>
      ))}
    </>
  );
}
