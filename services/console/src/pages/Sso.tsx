import { useState } from 'react';
import { ApiError, api } from '../api.ts';
import { CardForm, CopyButton, ErrorNote, Status } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';

interface SsoDomain {
  domain: string;
  status: 'verified' | 'pending' | 'held_elsewhere';
  txt_record: { type: 'TXT'; name: string; value: string } | null;
  proof_missing_since: string | null;
  lapses_at: string | null;
}

interface SsoConfig {
  issuer: string;
  client_id: string;
  identifier_claim: string;
  allowed_email_domains: string[];
  console_admins: string[];
  domains: SsoDomain[];
  redirect_uri: string;
  updated_at: string;
}

/** The form's fields as typed; the lists are comma- or space-separated. */
interface SsoForm {
  issuer: string;
  client_id: string;
  client_secret: string;
  identifier_claim: string;
  domains: string;
  admins: string;
}

const STATUS_TEXT: Record<SsoDomain['status'], string> = {
  verified: 'verified',
  pending: 'waiting for DNS proof',
  held_elsewhere: 'held by another organization',
};

/** A comma- or space-separated list as the API wants it. */
function listOf(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A labelled text input of the form (a password one keeps no autocomplete). */
function TextField(props: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  type?: 'password';
  placeholder?: string;
  required?: boolean;
}) {
  return (
    <label>
      {props.label}
      <input
        type={props.type ?? 'text'}
        autoComplete={props.type === 'password' ? 'off' : undefined}
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
        placeholder={props.placeholder}
        required={props.required}
      />
    </label>
  );
}

/**
 * One allowed email domain: where it stands, and for a pending one (or a verified one whose
 * record went missing) the TXT record and a Verify button. `onChecked` runs after each verify,
 * whatever its answer (the page reads the domains again).
 */
function DomainRow({ domain, onChecked }: { domain: SsoDomain; onChecked: () => void }) {
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const verify = () => {
    setBusy(true);
    setError(null);
    // Reloaded either way: a first verify of a domain with no record yet makes its claim (and record).
    api('POST', `/api/v1/mcp/sso/domains/${encodeURIComponent(domain.domain)}/verify`)
      .then(onChecked, (e: Error) => {
        setError(e);
        onChecked();
      })
      .finally(() => setBusy(false));
  };
  const missing = domain.status === 'verified' && domain.proof_missing_since !== null;
  const tone = missing
    ? 'warn'
    : domain.status === 'verified'
      ? 'good'
      : domain.status === 'pending'
        ? 'warn'
        : 'bad';
  const record = domain.txt_record;
  const actions = (
    <>
      <div className="actions">
        {record && (
          <>
            <CopyButton text={record.name} label={`Copy record name for ${domain.domain}`} />
            <CopyButton text={record.value} label={`Copy record value for ${domain.domain}`} />
          </>
        )}
        <button type="button" onClick={verify} disabled={busy}>
          Verify {domain.domain}
        </button>
      </div>
      <ErrorNote error={error} />
    </>
  );
  return (
    <tr>
      <td className="mono nowrap">{domain.domain}</td>
      <td className="nowrap">
        <span className={`pill ${tone}`}>
          {missing ? 'verified, record missing' : STATUS_TEXT[domain.status]}
        </span>
      </td>
      <td>
        {missing && record ? (
          <>
            <p>
              Engineers of this domain sign in through your provider, but the <strong>TXT</strong> record at{' '}
              <span className="mono">{record.name}</span> (value <span className="mono">{record.value}</span>)
              was not found since {formatTime(domain.proof_missing_since)}. Publish it again and verify, or
              this domain stops signing engineers in at {formatTime(domain.lapses_at)}.
            </p>
            {actions}
          </>
        ) : domain.status === 'verified' ? (
          record ? (
            <>
              Engineers of this domain sign in through your provider. Keep its TXT record at{' '}
              <span className="mono">{record.name}</span> published: Warden looks it up again.
            </>
          ) : (
            'Engineers of this domain sign in through your provider.'
          )
        ) : domain.status === 'held_elsewhere' ? (
          'Another organization proved this domain first; ask the operator if it is yours.'
        ) : (
          <>
            {domain.txt_record ? (
              <p>
                Publish a <strong>TXT</strong> record at{' '}
                <span className="mono">{domain.txt_record.name}</span> with the value{' '}
                <span className="mono">{domain.txt_record.value}</span>, then verify.
              </p>
            ) : (
              <p>
                Nobody holds this domain now: verify it to claim it again. Where this deployment asks for DNS
                proof, the TXT record to publish shows here then.
              </p>
            )}
            {actions}
          </>
        )}
      </td>
    </tr>
  );
}

/**
 * Single sign-on: the tenant's OpenID Connect provider for MCP sign-in (and console admins), and
 * its email domains with their DNS proof. The client secret is write-only: never shown, and sent
 * again with every change.
 */
export default function Sso() {
  const sso = useLoad('sso', () =>
    api<{ sso: SsoConfig }>('GET', '/api/v1/mcp/sso').then(
      (r) => r.sso,
      (e: unknown) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      },
    ),
  );
  const config = sso.data ?? null;
  const [form, setForm] = useState<SsoForm | null>(null);
  const values: SsoForm = form ?? {
    issuer: config?.issuer ?? '',
    client_id: config?.client_id ?? '',
    client_secret: '',
    identifier_claim: config?.identifier_claim ?? 'email',
    domains: config?.allowed_email_domains.join(', ') ?? '',
    admins: config?.console_admins.join(', ') ?? '',
  };
  const set = (key: keyof SsoForm) => (value: string) => setForm({ ...values, [key]: value });

  return (
    <>
      <h1>Single sign-on</h1>
      <Status loading={sso.loading} />
      <ErrorNote error={sso.error} />
      {config && (
        <section className="card" aria-labelledby="domains-heading">
          <h2 id="domains-heading">Email domains</h2>
          <p>
            The sign-in page sends an engineer to <span className="mono">{config.issuer}</span> once their
            email domain is verified. Register <span className="mono">{config.redirect_uri}</span> as the
            redirect URI of client <span className="mono">{config.client_id}</span> at your provider. Last
            changed {formatTime(config.updated_at)}.
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Domain</th>
                <th scope="col">Status</th>
                <th scope="col">What to do</th>
              </tr>
            </thead>
            <tbody>
              {config.domains.map((d) => (
                <DomainRow key={d.domain} domain={d} onChecked={sso.reload} />
              ))}
            </tbody>
          </table>
        </section>
      )}
      {!sso.loading && !sso.error && (
        <CardForm
          title={config ? 'Change the configuration' : 'Configure single sign-on'}
          submitLabel="Save"
          action={async () => {
            await api('PUT', '/api/v1/mcp/sso', {
              issuer: values.issuer,
              client_id: values.client_id,
              client_secret: values.client_secret,
              identifier_claim: values.identifier_claim,
              allowed_email_domains: listOf(values.domains),
              console_admins: listOf(values.admins),
            });
            setForm(null);
            sso.reload();
          }}
        >
          <TextField
            label="Issuer"
            value={values.issuer}
            onChange={set('issuer')}
            placeholder="https://login.acme.com"
            required
          />
          <TextField label="Client id" value={values.client_id} onChange={set('client_id')} required />
          <TextField
            label="Client secret"
            value={values.client_secret}
            onChange={set('client_secret')}
            type="password"
            placeholder={config ? 'enter it again to save' : ''}
            required
          />
          <TextField
            label="Identifier claim"
            value={values.identifier_claim}
            onChange={set('identifier_claim')}
            required
          />
          <TextField
            label="Allowed email domains"
            value={values.domains}
            onChange={set('domains')}
            placeholder="acme.com, eng.acme.com"
            required
          />
          <TextField
            label="Console admins"
            value={values.admins}
            onChange={set('admins')}
            placeholder="dana@acme.com"
          />
        </CardForm>
      )}
    </>
  );
}
