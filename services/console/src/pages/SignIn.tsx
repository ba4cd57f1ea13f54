import { useState } from 'react';
import type { FormEvent } from 'react';
import { ApiError, api } from '../api.ts';
import type { Session } from '../types.ts';

/**
 * Tenant admins sign in with a tenant API key, operators with WARDEN_ADMIN_TOKEN. The value goes
 * to the server once; the browser keeps only the httpOnly session cookie.
 */
export function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [kind, setKind] = useState<'tenant' | 'operator'>('tenant');
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = kind === 'tenant' ? { api_key: secret } : { admin_token: secret };
      const { session } = await api<{ session: Session }>('POST', '/console/api/session', body);
      setSecret('');
      onSignedIn(session);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : 'Sign-in failed; try again.');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="centered">
      <form className="card signin" onSubmit={(e) => void submit(e)}>
        <h1>Sign in to Warden</h1>
        <fieldset>
          <legend>Sign in as</legend>
          <label className="inline">
            <input type="radio" name="kind" checked={kind === 'tenant'} onChange={() => setKind('tenant')} />
            Tenant admin
          </label>
          <label className="inline">
            <input
              type="radio"
              name="kind"
              checked={kind === 'operator'}
              onChange={() => setKind('operator')}
            />
            Operator
          </label>
        </fieldset>
        <label htmlFor="secret">{kind === 'tenant' ? 'Tenant API key' : 'Admin token'}</label>
        <input
          id="secret"
          type="password"
          autoComplete="off"
          required
          value={secret}
          onChange={(e) => setSecret(e.target.value)}
          placeholder={kind === 'tenant' ? 'wdn_sk_…' : 'WARDEN_ADMIN_TOKEN'}
        />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <p className="hint">
          The key is exchanged for a session cookie the page cannot read; it is not stored in the browser.
        </p>
      </form>
    </main>
  );
}
