import { useState } from 'react';
import { api, listAll } from '../api.ts';
import { CardForm, ErrorNote, Gauge, Modal, Status, TypedConfirm } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';
import type { ConnectedAccount } from '../types.ts';

type Action =
  | { kind: 'rotate'; account: ConnectedAccount }
  | { kind: 'revoke'; account: ConnectedAccount }
  | { kind: 'offboard'; identifier: string };

function ConnectForm({ onDone }: { onDone: () => void }) {
  const [identifier, setIdentifier] = useState('');
  const [token, setToken] = useState('');
  return (
    <CardForm
      title="Connect an account"
      submitLabel="Verify and connect"
      action={async () => {
        await api('POST', '/api/v1/connected_accounts', {
          identifier,
          authorization: { type: 'api_token', api_token: token },
        });
        setIdentifier('');
        setToken('');
        onDone();
      }}
    >
      <label>
        Identifier
        <input
          value={identifier}
          onChange={(e) => setIdentifier(e.target.value)}
          required
          placeholder="alice@acme.com"
        />
      </label>
      <label>
        Cloudflare API token
        <input
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          required
        />
      </label>
    </CardForm>
  );
}

function RotateForm({ account, onDone }: { account: ConnectedAccount; onDone: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<Error | null>(null);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        api('PUT', `/api/v1/connected_accounts/${account.id}`, {
          authorization: { type: 'api_token', api_token: token },
        }).then(onDone, (err: Error) => setError(err));
      }}
    >
      <p>
        The new token is verified with Cloudflare before it replaces the one vaulted for{' '}
        <strong>{account.identifier}</strong>.
      </p>
      <label htmlFor="rotate-token">New Cloudflare API token</label>
      <input
        id="rotate-token"
        type="password"
        autoComplete="off"
        value={token}
        onChange={(e) => setToken(e.target.value)}
        required
      />
      <ErrorNote error={error} />
      <div className="actions">
        <button type="submit">Rotate</button>
      </div>
    </form>
  );
}

export default function Identities() {
  const accounts = useLoad('accounts', () =>
    listAll<ConnectedAccount>('/api/v1/connected_accounts', 'connected_accounts'),
  );
  const [filter, setFilter] = useState('');
  const [action, setAction] = useState<Action | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [revokeUpstream, setRevokeUpstream] = useState(false);

  const close = () => setAction(null);
  const done = (message: string) => {
    setAction(null);
    setNotice(message);
    accounts.reload();
  };

  const shown = (accounts.data ?? []).filter((a) =>
    a.identifier.toLowerCase().includes(filter.toLowerCase()),
  );
  const identifiers = [...new Set(shown.map((a) => a.identifier))].sort();

  return (
    <>
      <h1>Identities</h1>
      <ConnectForm onDone={() => done('Account connected.')} />
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <div className="toolbar">
        <label>
          Filter identities
          <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
        </label>
      </div>
      <ErrorNote error={accounts.error} />
      <Status loading={accounts.loading && !accounts.data} />
      {identifiers.map((identifier) => {
        const own = shown.filter((a) => a.identifier === identifier);
        const active = own.some((a) => a.status === 'ACTIVE');
        return (
          <section key={identifier} className="card identity" aria-label={`Identity ${identifier}`}>
            <div className="identity-head">
              <h2>{identifier}</h2>
              <span className={active ? 'pill good' : 'pill'}>{active ? 'active' : 'no active account'}</span>
              <button
                type="button"
                className="danger"
                onClick={() => setAction({ kind: 'offboard', identifier })}
                disabled={!active}
              >
                Offboard
              </button>
            </div>
            <table>
              <thead>
                <tr>
                  <th scope="col">Account</th>
                  <th scope="col">Status</th>
                  <th scope="col">Token</th>
                  <th scope="col">Cloudflare accounts</th>
                  <th scope="col">Last use</th>
                  <th scope="col">Budget</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {own.map((a) => (
                  <tr key={a.id}>
                    <td className="mono">
                      {a.id}
                      <br />
                      <span className="muted">{a.connection_name}</span>
                    </td>
                    <td>
                      <span className={`pill ${a.status === 'ACTIVE' ? 'good' : 'bad'}`}>{a.status}</span>
                    </td>
                    <td>
                      {a.token_kind} {a.authorization_type === 'api_token' ? 'token' : 'global key'}
                      <br />
                      <span className="muted">{a.cloudflare.token_status}</span>
                    </td>
                    <td>
                      {a.cloudflare.accounts.map((x) => x.name).join(', ') ||
                        a.cloudflare.account_ids.join(', ')}
                    </td>
                    <td>{formatTime(a.last_used_at)}</td>
                    <td>
                      {a.rate_budget ? (
                        <Gauge
                          remaining={a.rate_budget.remaining}
                          capacity={a.rate_budget.capacity}
                          label={`Rate budget left for ${a.id}`}
                        />
                      ) : (
                        '—'
                      )}
                    </td>
                    <td className="actions">
                      {a.status !== 'REVOKED' && (
                        <>
                          <button
                            type="button"
                            className="secondary"
                            onClick={() => setAction({ kind: 'rotate', account: a })}
                          >
                            Rotate
                          </button>
                          <button
                            type="button"
                            className="danger"
                            onClick={() => setAction({ kind: 'revoke', account: a })}
                          >
                            Revoke
                          </button>
                        </>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        );
      })}
      <Modal
        title={
          action?.kind === 'rotate'
            ? 'Rotate credential'
            : action?.kind === 'revoke'
              ? 'Revoke account'
              : `Offboard ${action?.kind === 'offboard' ? action.identifier : ''}`
        }
        open={action !== null}
        onClose={close}
      >
        {action?.kind === 'rotate' && (
          <RotateForm account={action.account} onDone={() => done('Credential rotated.')} />
        )}
        {action?.kind === 'revoke' && (
          <TypedConfirm
            subject={action.account.id}
            action="Revoke"
            onCancel={close}
            onConfirm={async () => {
              await api('DELETE', `/api/v1/connected_accounts/${action.account.id}`);
              done(`Revoked ${action.account.id}; its ciphertext and data key are destroyed.`);
            }}
          >
            <p>The vaulted credential is destroyed and running calls with it stop.</p>
          </TypedConfirm>
        )}
        {action?.kind === 'offboard' && (
          <TypedConfirm
            subject={action.identifier}
            action="Offboard"
            onCancel={close}
            onConfirm={async () => {
              const r = await api<{
                revoked_connected_accounts: Array<{ id: string }>;
                revoked_mcp_tokens: number;
              }>('POST', `/api/v1/identities/${encodeURIComponent(action.identifier)}/offboard`, {
                revoke_upstream: revokeUpstream,
              });
              done(
                `Offboarded ${action.identifier}: ${r.revoked_connected_accounts.length} accounts and ${r.revoked_mcp_tokens} MCP tokens revoked, sessions closed.`,
              );
            }}
          >
            <p>
              Revokes every connected account, MCP token, sign-in grant and live MCP session of this identity
              at once.
            </p>
            <label className="inline">
              <input
                type="checkbox"
                checked={revokeUpstream}
                onChange={(e) => setRevokeUpstream(e.target.checked)}
              />
              Also delete the Cloudflare tokens themselves (and the ones agents minted)
            </label>
          </TypedConfirm>
        )}
      </Modal>
    </>
  );
}
