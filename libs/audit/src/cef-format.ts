import { isIPv4, isIPv6 } from 'node:net';
import type { AuditEvent } from './audit-event.ts';
import { canonicalJson } from './audit-hash.ts';
import { DEFAULT_PRODUCT_VERSION, severityOf, truncateText } from './format-common.ts';
import type { FormatOptions } from './format-common.ts';

/** Length limits of the CEF dictionary (ArcSight CEF spec): receivers cut or reject beyond them. */
const MAX_HEADER_NAME = 512;
const MAX_HEADER_FIELD = 1023;
const MAX_VALUE = 1023;
const MAX_CUSTOM_STRING = 4000;

/**
 * Control characters other than TAB, CR and LF have no CEF escape, and NUL in particular cuts
 * the line short in C-based parsers; LINE and PARAGRAPH SEPARATOR split lines in some readers.
 * They become U+FFFD. Lone surrogates cannot be encoded as UTF-8 and get the same treatment.
 */
function printable(value: string): string {
  return value.toWellFormed().replace(/(?![\t\r\n])\p{Cc}|[\u2028\u2029]/gu, '\uFFFD');
}

/** Header fields escape `\` and `|`; a newline cannot be escaped there, so it becomes a space. */
function headerField(value: string, max: number): string {
  return truncateText(printable(value).replace(/[\r\n\t]/g, ' '), max)
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|');
}

/** Extension values escape `\` and `=`, and carry CR/LF as the two-character escapes `\r`/`\n`. */
function extensionValue(value: string, max: number): string {
  return truncateText(printable(value), max)
    .replace(/\\/g, '\\\\')
    .replace(/=/g, '\\=')
    .replace(/\r/g, '\\r')
    .replace(/\n/g, '\\n');
}

function eventName(event: AuditEvent): string {
  if (event.upstream) {
    return `${event.upstream.method.toUpperCase()} ${event.upstream.path_template ?? event.upstream.path}`;
  }
  return event.tool_name ? `${event.action} ${event.tool_name}` : event.action;
}

type Extension = readonly [key: string, value: string | number | null | undefined, max?: number];

/** A custom field and its label, emitted only when there is a value. */
function labelled(key: string, label: string, value: string | number | null, max = MAX_VALUE): Extension[] {
  return value === null
    ? []
    : [
        [key, value, max],
        [`${key}Label`, label],
      ];
}

function sourceAddress(ip: string | null): Extension[] {
  if (ip === null) return [];
  if (isIPv4(ip)) return [['src', ip]];
  if (isIPv6(ip)) return labelled('c6a2', 'Source IPv6 Address', ip);
  return [];
}

/**
 * One event as one CEF line. Standard dictionary keys where one fits; Warden's own fields
 * in the labelled custom slots (cs1–cs6, cn1–cn3, flexString1–2). CEF is a lossy view for
 * SIEMs that speak it: the hash chain and unbounded code live in the NDJSON and OCSF exports.
 */
export function toCefLine(event: AuditEvent, options: FormatOptions = {}): string {
  if (event.kind === 'audit_checkpoint') return checkpointCefLine(event, options);
  const upstream = event.upstream;
  const extensions: Extension[] = [
    ['rt', Date.parse(event.occurred_at)],
    ['externalId', event.id, 40],
    ['cat', event.kind],
    ['act', event.action, 63],
    ['outcome', event.outcome, 63],
    ['suser', event.identifier],
    ['suid', event.caller.id],
    // Who acted: an operator (admin), a tenant API key, an MCP token or Warden itself (system).
    ['spriv', event.caller.type],
    ...sourceAddress(event.caller.ip),
    [
      'requestClientApplication',
      event.caller.client_name === null
        ? null
        : `${event.caller.client_name}${event.caller.client_version ? `/${event.caller.client_version}` : ''}`,
    ],
    ['requestMethod', upstream?.method.toUpperCase()],
    ['request', upstream?.path],
    ['duid', event.connected_account_id],
    ['in', event.request_bytes],
    ['out', event.response_bytes],
    ['reason', event.error?.code],
    ['msg', event.error?.message],
    ...labelled('cs1', 'Tool', event.tool_name),
    ...labelled('cs2', 'Execution ID', event.execution_id),
    ...labelled('cs3', 'CF-Ray', upstream?.cf_ray ?? null),
    ...labelled('cs4', 'Agent Run ID', event.agent_run_id),
    ...labelled('cs5', 'Code SHA-256', event.code_sha256),
    ...labelled(
      'cs6',
      'Code',
      event.code,
      Math.min(options.maxCodeChars ?? MAX_CUSTOM_STRING, MAX_CUSTOM_STRING),
    ),
    ...labelled('cn1', 'Sequence', event.seq),
    ...labelled('cn2', 'Duration ms', event.duration_ms),
    ...labelled('cn3', 'Upstream Status', upstream?.status ?? null),
    ...labelled('flexString1', 'Tenant ID', event.tenant_id),
    ...labelled('flexString2', 'Path Template', upstream?.path_template ?? null),
  ];
  return cefLine(event, extensions, options);
}

/**
 * A signed checkpoint: the custom slots a record uses for its tool call carry what a SIEM
 * needs to check the signature on its own (the digest covers the fields in `cs3`).
 */
function checkpointCefLine(event: AuditEvent, options: FormatOptions): string {
  const checkpoint = (event.details?.checkpoint ?? {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' ? value : null);
  return cefLine(
    event,
    [
      ['rt', Date.parse(event.occurred_at)],
      ['externalId', event.id, 40],
      ['cat', event.kind],
      ['act', event.action, 63],
      ['outcome', event.outcome, 63],
      ['spriv', event.caller.type],
      ...labelled('cs1', 'Checkpoint Key ID', text(checkpoint.key_id)),
      ...labelled('cs2', 'Checkpoint Algorithm', text(checkpoint.algorithm)),
      ...labelled('cs3', 'Checkpoint Fields', canonicalJson(checkpoint), MAX_CUSTOM_STRING),
      ...labelled('cs4', 'Checkpoint Digest', event.hash),
      ...labelled('cs5', 'Previous Checkpoint Digest', event.prev_hash),
      ...labelled('cs6', 'Checkpoint Signature', text(checkpoint.signature), MAX_CUSTOM_STRING),
      ...labelled('cn1', 'Sequence', event.seq),
      ...labelled('flexString1', 'Tenant ID', event.tenant_id),
    ],
    options,
  );
}

function cefLine(event: AuditEvent, extensions: readonly Extension[], options: FormatOptions): string {
  const extension = extensions
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([key, value, max]) => `${key}=${extensionValue(String(value), max ?? MAX_VALUE)}`)
    .join(' ');
  const header = [
    'CEF:0',
    'Warden',
    'Warden',
    headerField(options.productVersion ?? DEFAULT_PRODUCT_VERSION, MAX_HEADER_FIELD),
    headerField(event.action, MAX_HEADER_FIELD),
    headerField(eventName(event), MAX_HEADER_NAME),
    String(severityOf(event.outcome).cef),
  ].join('|');
  return `${header}|${extension}\n`;
}
