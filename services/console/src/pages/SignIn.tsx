import { useState } from 'react';
import type { FormEvent } from 'react';
import { ApiError, api } from '../api.ts';
import type { Session } from '../types.ts';

/** Why the last sign-in through the tenant's SSO came back without a session (`?sso_error=`). */
const SSO_ERRORS: Record<string, string> = {
  not_admin:
    'You signed in with your organization’s SSO, but you are not one of its console admins. An admin adds you to console_admins of the SSO configuration; until then, sign in with a tenant API key.',
  refused:
    'Your organization’s SSO did not accept this sign-in (for example an email outside its allowed domains).',
  failed: 'Your organization’s identity provider could not complete the sign-in. Try again later.',
};

function ssoErrorFromUrl(): string | null {
  const code = new URLSearchParams(window.location.search).get('sso_error');
  if (code === null) return null;
  window.history.replaceState(null, '', window.location.pathname);
  return SSO_ERRORS[code] ?? 'The single sign-on did not complete. Start it again.';
}

/**
 * Sign in with the tenant's SSO (for the admins its SSO configuration names), with a tenant API
 * key, or, for operators, with WARDEN_ADMIN_TOKEN. A key goes to the server once; the browser
 * keeps only the httpOnly session cookie.
 */
export function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [email, setEmail] = useState('');
  const [ssoError, setSsoError] = useState<string | null>(ssoErrorFromUrl);
  const [ssoBusy, setSsoBusy] = useState(false);
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

  const startSso = async (event: FormEvent) => {
    event.preventDefault();
    setSsoBusy(true);
    setSsoError(null);
    try {
      // The email's domain names the one organization whose SSO it signs in with.
      const answer = await api<{ redirect_url: string }>('POST', '/console/api/sso', { email });
      window.location.assign(answer.redirect_url);
      return;
    } catch (e) {
      setSsoError(e instanceof ApiError ? e.message : 'The single sign-on could not start; try again.');
    }
    setSsoBusy(false);
  };

  return (
    <main className="centered">
      <h1>Sign in to Warden</h1>
      <form className="card signin" onSubmit={(e) => void startSso(e)} aria-labelledby="sso-heading">
        <h2 id="sso-heading">Tenant admin: your organization’s SSO</h2>
        <label htmlFor="sso-email">Work email</label>
        <input
          id="sso-email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          placeholder="you@example.com"
        />
        {ssoError && (
          <p className="error" role="alert">
            {ssoError}
          </p>
        )}
        <button type="submit" disabled={ssoBusy}>
          Sign in with SSO
        </button>
      </form>
      <form className="card signin" onSubmit={(e) => void submit(e)} aria-labelledby="key-heading">
        <h2 id="key-heading">With a key</h2>
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
