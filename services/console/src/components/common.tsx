import { useEffect, useId, useRef, useState } from 'react';
import type { ReactNode } from 'react';
import { ApiError } from '../api.ts';

export function ErrorNote({ error }: { error: Error | undefined | null }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {error instanceof ApiError && error.field ? `${error.message}` : error.message}
    </p>
  );
}

export function Status({ loading, children }: { loading: boolean; children?: ReactNode }) {
  return loading ? <p role="status">Loading…</p> : <>{children}</>;
}

/** Used share of a budget as a meter, labelled with what is left. */
export function Gauge({
  remaining,
  capacity,
  label,
}: {
  remaining: number;
  capacity: number;
  label: string;
}) {
  const left = capacity > 0 ? remaining / capacity : 0;
  const tone = left < 0.1 ? 'low' : left < 0.5 ? 'mid' : 'ok';
  return (
    <span className="gauge">
      <meter
        min={0}
        max={capacity}
        low={capacity * 0.1}
        high={capacity * 0.5}
        optimum={capacity}
        value={remaining}
        aria-label={label}
        className={tone}
      />
      <span className="gauge-text">
        {remaining}/{capacity}
      </span>
    </span>
  );
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      className="secondary"
      onClick={() =>
        void navigator.clipboard.writeText(text).then(() => {
          setCopied(true);
          setTimeout(() => setCopied(false), 2000);
        })
      }
    >
      {copied ? 'Copied' : label}
    </button>
  );
}

/** A modal dialog (native <dialog>: focus is trapped and Escape closes it). */
export function Modal({
  title,
  open,
  onClose,
  children,
}: {
  title: string;
  open: boolean;
  onClose: () => void;
  children: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return (
    <dialog ref={ref} onClose={onClose} aria-labelledby="modal-title">
      <h2 id="modal-title">{title}</h2>
      {open && children}
    </dialog>
  );
}

/**
 * A destructive action confirmed by typing its subject: nothing happens until the text matches.
 */
export function TypedConfirm({
  subject,
  action,
  onConfirm,
  onCancel,
  children,
}: {
  subject: string;
  action: string;
  onConfirm: () => Promise<void>;
  onCancel: () => void;
  children?: ReactNode;
}) {
  const [typed, setTyped] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        onConfirm().catch((err: unknown) => {
          setError(err instanceof Error ? err : new Error(String(err)));
          setBusy(false);
        });
      }}
    >
      {children}
      <label htmlFor="typed-confirmation">
        Type <strong>{subject}</strong> to confirm
      </label>
      <input
        id="typed-confirmation"
        autoComplete="off"
        value={typed}
        onChange={(e) => setTyped(e.target.value)}
      />
      <ErrorNote error={error} />
      <div className="actions">
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="danger" disabled={typed !== subject || busy}>
          {action}
        </button>
      </div>
    </form>
  );
}

/**
 * A labelled <select>. The label points at it by id rather than wrapping it: a wrapping label
 * would give the select every option's text as part of its name.
 */
export function SelectField({
  label,
  value,
  onChange,
  options,
}: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  options: ReadonlyArray<string | { value: string; label: string }>;
}) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        {options.map((o) =>
          typeof o === 'string' ? (
            <option key={o} value={o}>
              {o}
            </option>
          ) : (
            <option key={o.value} value={o.value}>
              {o.label}
            </option>
          ),
        )}
      </select>
    </div>
  );
}

/**
 * A titled card holding one form whose submit runs `action`: busy while it runs, its error shown
 * under the fields, whatever comes after (a notice, a secret shown once) left to the caller.
 */
export function CardForm({
  title,
  submitLabel,
  action,
  children,
  after,
}: {
  title: string;
  submitLabel: string;
  action: () => Promise<void>;
  children: ReactNode;
  after?: ReactNode;
}) {
  const headingId = useId();
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <form
      className="card row-form"
      aria-labelledby={headingId}
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        action()
          .catch((err: unknown) => setError(err instanceof Error ? err : new Error(String(err))))
          .finally(() => setBusy(false));
      }}
    >
      <h2 id={headingId}>{title}</h2>
      <div className="fields">
        {children}
        <button type="submit" disabled={busy}>
          {submitLabel}
        </button>
      </div>
      <ErrorNote error={error} />
      {after}
    </form>
  );
}
