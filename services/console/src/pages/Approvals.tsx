import { useState } from 'react';
import { api } from '../api.ts';
import { ErrorNote, Status } from '../components/common.tsx';
import { formatTime, useLoad } from '../hooks.ts';
import type { Approval } from '../types.ts';
import { pendingApprovals } from './Overview.tsx';

function Decision({ approval, onDone }: { approval: Approval; onDone: () => void }) {
  const [comment, setComment] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const decide = (verb: 'approve' | 'reject') =>
    api(
      'POST',
      `/api/v1/approvals/${encodeURIComponent(approval.id)}/${verb}`,
      // The step shown is the step decided: a later one nobody saw is refused (409).
      {
        ...(comment ? { comment } : {}),
        ...(approval.steps?.length ? { step: approval.steps.at(-1)!.step } : {}),
      },
    ).then(onDone, (e: Error) => setError(e));
  return (
    <div className="decision">
      <label>
        Comment
        <input value={comment} onChange={(e) => setComment(e.target.value)} />
      </label>
      <button type="button" onClick={() => void decide('approve')}>
        Approve
      </button>
      <button type="button" className="danger" onClick={() => void decide('reject')}>
        Reject
      </button>
      <ErrorNote error={error} />
    </div>
  );
}

/** An apply in steps: approving sends only this step's writes, then the agent's code runs again. */
function StepSends({ approval }: { approval: Approval }) {
  const step = approval.steps?.at(-1);
  if (!step) return null;
  return (
    <>
      <h3>Step {step.step}: approving sends</h3>
      <p className="muted">
        A later write needs the result of an earlier one, so this plan is applied in steps: approving sends
        only these writes, then the agent&apos;s code runs again with their real results and its next writes
        wait here as the next step.
      </p>
      <pre className="code">{JSON.stringify(step.sends, null, 2)}</pre>
    </>
  );
}

export default function Approvals() {
  const approvals = useLoad('approvals', pendingApprovals);
  return (
    <>
      <h1>Approvals</h1>
      <ErrorNote error={approvals.error} />
      <Status loading={approvals.loading} />
      {approvals.data === null && (
        <p className="card">
          Write approvals are not available on this Warden: its API has no <code>/api/v1/approvals</code>.
        </p>
      )}
      {approvals.data?.length === 0 && <p className="card">Nothing waits for a decision.</p>}
      {approvals.data?.map((a) => (
        <section key={a.id} className="card" aria-label={`Approval ${a.id}`}>
          <h2>
            {a.identifier} <span className="muted">· {a.id}</span>
          </h2>
          <p>
            Requested {formatTime(a.created_at)}, expires {formatTime(a.expires_at)}
          </p>
          <h3>Plan</h3>
          <pre className="code">{JSON.stringify(a.plan, null, 2)}</pre>
          {a.steps?.length ? <StepSends approval={a} /> : null}
          <Decision approval={a} onDone={approvals.reload} />
        </section>
      ))}
    </>
  );
}
