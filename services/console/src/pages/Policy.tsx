import { useEffect, useState } from 'react';
import type { FormEvent } from 'react';
import { ApiError, api } from '../api.ts';
import { ErrorNote, SelectField, Status } from '../components/common.tsx';
import { useLoad } from '../hooks.ts';
import type { Policy, PolicyRule } from '../types.ts';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

interface Answer {
  allowed: boolean;
  path: string;
  rule: string | null;
  scope: 'tenant' | 'identity' | null;
  reason: string;
}

function policyUrl(scope: string): string {
  return scope === '' ? '/api/v1/policy' : `/api/v1/identities/${encodeURIComponent(scope)}/policy`;
}

function RuleForm({ onAdd }: { onAdd: (rule: PolicyRule) => void }) {
  const [effect, setEffect] = useState<'allow' | 'deny'>('deny');
  const [methods, setMethods] = useState('POST');
  const [path, setPath] = useState('');
  const [name, setName] = useState('');
  return (
    <form
      className="row-form"
      aria-label="Add a rule"
      onSubmit={(e) => {
        e.preventDefault();
        onAdd({
          effect,
          methods: methods
            .split(',')
            .map((m) => m.trim().toUpperCase())
            .filter(Boolean),
          path: path.trim(),
          ...(name.trim() ? { name: name.trim() } : {}),
        });
        setPath('');
        setName('');
      }}
    >
      <div className="fields">
        <SelectField
          label="Effect"
          value={effect}
          onChange={(v) => setEffect(v as 'allow' | 'deny')}
          options={['deny', 'allow']}
        />
        <label>
          Methods
          <input value={methods} onChange={(e) => setMethods(e.target.value)} placeholder="POST,PUT or *" />
        </label>
        <label className="grow">
          Path pattern
          <input
            value={path}
            onChange={(e) => setPath(e.target.value)}
            required
            placeholder="/zones/*/dns_records/**"
          />
        </label>
        <label>
          Rule name
          <input value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <button type="submit" className="secondary">
          Add rule
        </button>
      </div>
    </form>
  );
}

function Tester() {
  const [identifier, setIdentifier] = useState('');
  const [method, setMethod] = useState('POST');
  const [path, setPath] = useState('');
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const test = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      setAnswer(await api<Answer>('POST', '/api/v1/policy/evaluate', { identifier, method, path }));
    } catch (err) {
      setAnswer(null);
      setError(err as Error);
    }
  };
  return (
    <section className="card" aria-labelledby="tester-heading">
      <h2 id="tester-heading">Policy tester</h2>
      <form className="row-form" onSubmit={(e) => void test(e)}>
        <div className="fields">
          <label>
            Identity
            <input
              value={identifier}
              onChange={(e) => setIdentifier(e.target.value)}
              required
              placeholder="alice@acme.com"
            />
          </label>
          <SelectField label="Method" value={method} onChange={setMethod} options={METHODS} />
          <label className="grow">
            Path
            <input
              value={path}
              onChange={(e) => setPath(e.target.value)}
              required
              placeholder="/zones/023e…/dns_records"
            />
          </label>
          <button type="submit">Would it be allowed?</button>
        </div>
      </form>
      <ErrorNote error={error} />
      {answer && (
        <div className={answer.allowed ? 'notice' : 'error'} role="status" data-testid="tester-answer">
          <strong>{answer.allowed ? 'Allowed' : 'Refused'}</strong> — {answer.reason}
          <br />
          <span className="muted">
            Deciding rule: {answer.rule ?? 'none (default)'}
            {answer.scope ? ` (${answer.scope} policy)` : ''} · evaluated on <code>{answer.path}</code>
          </span>
        </div>
      )}
    </section>
  );
}

export default function PolicyPage() {
  const [scope, setScope] = useState('');
  const [scopeDraft, setScopeDraft] = useState('');
  const loaded = useLoad(`policy:${scope}`, () => api<{ policy: Policy }>('GET', policyUrl(scope)));
  const [policy, setPolicy] = useState<Policy | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  useEffect(() => {
    if (loaded.data) setPolicy(structuredClone(loaded.data.policy));
  }, [loaded.data]);

  const save = async () => {
    if (!policy) return;
    setError(null);
    setSaved(null);
    try {
      const r = await api<{ policy: Policy }>('PUT', policyUrl(scope), policy);
      setPolicy(r.policy);
      setSaved(scope === '' ? 'Tenant policy saved.' : `Policy of ${scope} saved.`);
    } catch (err) {
      setError(err instanceof ApiError ? err : (err as Error));
    }
  };
  const rules = policy?.rules ?? [];

  return (
    <>
      <h1>Policy</h1>
      <section className="card" aria-labelledby="editor-heading">
        <h2 id="editor-heading">{scope === '' ? 'Tenant-wide policy' : `Policy of ${scope}`}</h2>
        <form
          className="toolbar"
          onSubmit={(e) => {
            e.preventDefault();
            setScope(scopeDraft.trim());
          }}
        >
          <label>
            Identity (empty for the tenant)
            <input value={scopeDraft} onChange={(e) => setScopeDraft(e.target.value)} />
          </label>
          <button type="submit" className="secondary">
            Edit
          </button>
        </form>
        <ErrorNote error={loaded.error} />
        <Status loading={loaded.loading && !policy} />
        {policy && (
          <>
            <label className="inline">
              <input
                type="checkbox"
                checked={policy.read_only ?? false}
                onChange={(e) => setPolicy({ ...policy, read_only: e.target.checked })}
              />
              Read only (GET and GraphQL queries)
            </label>
            <label className="inline">
              <input
                type="checkbox"
                checked={policy.deny_writes_by_default ?? false}
                onChange={(e) => setPolicy({ ...policy, deny_writes_by_default: e.target.checked })}
              />
              Deny writes no allow rule matches
            </label>
            <table>
              <caption className="sr-only">Rules, evaluated deny first</caption>
              <thead>
                <tr>
                  <th scope="col">Effect</th>
                  <th scope="col">Methods</th>
                  <th scope="col">Path</th>
                  <th scope="col">Name</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rules.length === 0 && (
                  <tr>
                    <td colSpan={5}>No rules.</td>
                  </tr>
                )}
                {rules.map((rule, i) => (
                  <tr key={`${i}-${rule.path}`}>
                    <td>
                      <span className={`pill ${rule.effect === 'deny' ? 'bad' : 'good'}`}>{rule.effect}</span>
                    </td>
                    <td>{rule.methods.join(', ')}</td>
                    <td className="mono">{rule.path}</td>
                    <td>{rule.name ?? ''}</td>
                    <td>
                      <button
                        type="button"
                        className="secondary"
                        aria-label={`Remove rule ${rule.name ?? rule.path}`}
                        onClick={() => setPolicy({ ...policy, rules: rules.filter((_, j) => j !== i) })}
                      >
                        Remove
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <RuleForm onAdd={(rule) => setPolicy({ ...policy, rules: [...rules, rule] })} />
            <ErrorNote error={error} />
            {saved && (
              <p className="notice" role="status">
                {saved}
              </p>
            )}
            <div className="actions">
              <button type="button" onClick={() => void save()}>
                Save policy
              </button>
            </div>
          </>
        )}
      </section>
      <Tester />
    </>
  );
}
