import { useState } from 'react';
import { api, listAll, query } from '../api.ts';
import { CardForm, CopyButton, ErrorNote, SelectField, Status } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';

interface Minted {
  token: string;
  url: string;
  expires_at: string;
  cursor_config: Record<string, unknown>;
}

interface TokenView {
  id: string;
  identifier: string;
  connection_names: string[] | null;
  status: 'active' | 'expired' | 'revoked';
  expires_at: string;
  created_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
  client: { name: string; version: string | null } | null;
}

/** Ready configurations for the three clients people use, from one minted token. */
export function clientConfigs(m: Minted) {
  const header = `Bearer ${m.token}`;
  return [
    { client: 'Cursor', file: '~/.cursor/mcp.json', text: JSON.stringify(m.cursor_config, null, 2) },
    {
      client: 'Claude Code',
      file: 'shell',
      text: `claude mcp add --transport http cloudflare ${m.url} --header "Authorization: ${header}"`,
    },
    {
      client: 'VS Code',
      file: '.vscode/mcp.json',
      text: JSON.stringify(
        { servers: { cloudflare: { type: 'http', url: m.url, headers: { Authorization: header } } } },
        null,
        2,
      ),
    },
  ];
}

export default function Mcp() {
  const [identifier, setIdentifier] = useState('');
  const [expiry, setExpiry] = useState('7d');
  const [listed, setListed] = useState('');
  const [minted, setMinted] = useState<Minted | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const tokens = useLoad(listed || null, () =>
    listAll<TokenView>(`/api/v1/mcp/tokens${query({ identifier: listed })}`, 'mcp_tokens'),
  );

  return (
    <>
      <h1>MCP</h1>
      <CardForm
        title="Mint a token"
        submitLabel="Mint"
        action={async () => {
          setMinted(await api<Minted>('POST', '/api/v1/mcp/tokens', { identifier, expiry }));
          setListed(identifier);
          tokens.reload();
        }}
      >
        <label>
          Identifier
          <input value={identifier} onChange={(e) => setIdentifier(e.target.value)} required />
        </label>
        <SelectField
          label="Expires after"
          value={expiry}
          onChange={setExpiry}
          options={[
            { value: '3600s', label: '1 hour' },
            { value: '1d', label: '1 day' },
            { value: '7d', label: '7 days' },
            { value: '30d', label: '30 days' },
          ]}
        />
      </CardForm>
      {minted && (
        <section className="card" aria-labelledby="configs-heading">
          <h2 id="configs-heading">Client configuration</h2>
          <p>
            The token is shown this once; it expires {formatTime(minted.expires_at)}. Copy the configuration
            for your client:
          </p>
          {clientConfigs(minted).map((c) => (
            <div key={c.client} className="config">
              <h3>
                {c.client} <span className="muted">({c.file})</span>
              </h3>
              <pre className="code">{c.text}</pre>
              <CopyButton text={c.text} label={`Copy ${c.client} config`} />
            </div>
          ))}
        </section>
      )}
      <section className="card" aria-labelledby="tokens-heading">
        <h2 id="tokens-heading">Tokens</h2>
        <form
          className="toolbar"
          onSubmit={(e) => {
            e.preventDefault();
            const value = new FormData(e.currentTarget).get('who');
            setListed(typeof value === 'string' ? value : '');
          }}
        >
          <label>
            Identifier
            <input name="who" defaultValue={listed} key={listed} />
          </label>
          <button type="submit" className="secondary">
            List
          </button>
        </form>
        <ErrorNote error={tokens.error ?? error} />
        {listed && <Status loading={tokens.loading} />}
        {tokens.data && (
          <table>
            <thead>
              <tr>
                <th scope="col">Token</th>
                <th scope="col">Client</th>
                <th scope="col">Created</th>
                <th scope="col">Last use</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => {
                const state = t.status;
                return (
                  <tr key={t.id}>
                    <td className="mono">{t.id}</td>
                    <td>{t.client?.name ?? '—'}</td>
                    <td>{formatTime(t.created_at)}</td>
                    <td>{formatTime(t.last_used_at)}</td>
                    <td>{formatTime(t.expires_at)}</td>
                    <td>
                      <span className={`pill ${state === 'active' ? 'good' : 'bad'}`}>{state}</span>
                    </td>
                    <td>
                      {state === 'active' && (
                        <button
                          type="button"
                          className="danger"
                          onClick={() =>
                            void api('DELETE', `/api/v1/mcp/tokens/${encodeURIComponent(t.id)}`).then(
                              tokens.reload,
                              setError,
                            )
                          }
                        >
                          Revoke
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
