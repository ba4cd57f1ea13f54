import warden from '../../../package.json' with { type: 'json' };
import type { AuditEvent, AuditOutcome } from './audit-event.ts';

/** Options shared by every export format and sink payload. */
export interface FormatOptions {
  /** Warden's release, reported as the product version (CEF header, OCSF metadata). */
  readonly productVersion?: string;
  /**
   * Longest `code` kept, in UTF-16 code units. Unset keeps all of it: exports are the
   * complete record. Sinks set it because SIEM receivers truncate or drop long events,
   * and `code_sha256` still identifies the full source.
   */
  readonly maxCodeChars?: number;
}

/** Warden's release (the repository's package.json), unless a caller names another. */
export const DEFAULT_PRODUCT_VERSION: string = warden.version;

export interface EventSeverity {
  /** OCSF severity_id: 1 Informational, 2 Low, 3 Medium. */
  readonly ocsfId: 1 | 2 | 3;
  readonly ocsfName: 'Informational' | 'Low' | 'Medium';
  /** CEF severity, 0–10. */
  readonly cef: number;
  /** RFC 5424 severity: 6 Informational, 4 Warning. */
  readonly syslog: 4 | 6;
}

/**
 * One severity scale for every format, so a SIEM rule written against OCSF, CEF or syslog
 * sees the same ranking. A policy refusal ranks highest: it is the event a security team
 * wants to hear about (an agent tried something it may not do).
 */
export function severityOf(outcome: AuditOutcome): EventSeverity {
  switch (outcome) {
    case 'success':
      return { ocsfId: 1, ocsfName: 'Informational', cef: 3, syslog: 6 };
    case 'pending':
      // An intent: the request is about to be sent; its outcome follows.
      return { ocsfId: 1, ocsfName: 'Informational', cef: 3, syslog: 6 };
    case 'error':
    case 'timeout':
    case 'rate_limited':
      return { ocsfId: 2, ocsfName: 'Low', cef: 5, syslog: 4 };
    case 'unknown':
      // Sent, but what Cloudflare answered was never recorded: someone should look.
      return { ocsfId: 3, ocsfName: 'Medium', cef: 7, syslog: 4 };
    case 'refused':
      return { ocsfId: 3, ocsfName: 'Medium', cef: 7, syslog: 4 };
  }
}

/**
 * Cuts `value` to at most `maxChars` UTF-16 code units, marker included, without splitting a
 * surrogate pair. The marker says how long the original was, so nobody mistakes a cut value
 * for the whole one.
 */
export function truncateText(value: string, maxChars: number): string {
  if (value.length <= maxChars) return value;
  const marker = `...[truncated, ${value.length} chars]`;
  let keep = Math.max(0, maxChars - marker.length);
  const last = value.charCodeAt(keep - 1);
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep -= 1;
  return value.slice(0, keep) + marker;
}

export function withCodeCapped(event: AuditEvent, maxCodeChars: number | undefined): AuditEvent {
  if (maxCodeChars === undefined || event.code === null || event.code.length <= maxCodeChars) return event;
  return { ...event, code: truncateText(event.code, maxCodeChars) };
}

/**
 * JSON.stringify already escapes every C0 control character, so the result has no CR or LF.
 * NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR are legal raw in JSON but some line readers
 * (Python's str.splitlines, several log shippers) break on them; escaping keeps one event
 * per line for every reader and parses back to the same string.
 */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value).replace(/[\u0085\u2028\u2029]/g, escapeUnicode) + '\n';
}

function escapeUnicode(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}
