import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
import { badRequest } from './fake-cloudflare.errors.ts';
import type { CfError } from './fake-cloudflare.errors.ts';

/** The record types the OpenAPI document lists for `type`. */
const DNS_RECORD_TYPES: ReadonlySet<string> = new Set([
  'A',
  'AAAA',
  'CAA',
  'CERT',
  'CNAME',
  'DNSKEY',
  'DS',
  'HTTPS',
  'LOC',
  'MX',
  'NAPTR',
  'NS',
  'PTR',
  'SMIMEA',
  'SRV',
  'SSHFP',
  'SVCB',
  'TLSA',
  'TXT',
  'URI',
]);

const PROXIABLE_TYPES: ReadonlySet<string> = new Set(['A', 'AAAA', 'CNAME']);
const HOST_CONFLICT_TYPES: ReadonlySet<string> = new Set(['A', 'AAAA', 'CNAME']);
const HOSTNAME_CONTENT_TYPES: ReadonlySet<string> = new Set(['CNAME', 'MX', 'NS', 'PTR']);
const PRIORITY_TYPES: ReadonlySet<string> = new Set(['MX', 'SRV', 'URI']);
const MAX_TXT_CONTENT = 2048;
const MAX_COMMENT = 100;

/** The validated, normalized fields of a DNS record (what the store keeps besides ids and dates). */
export interface DnsRecordFields {
  readonly type: string;
  readonly name: string;
  readonly content: string;
  readonly ttl: number;
  readonly proxied: boolean;
  readonly priority: number | null;
  readonly comment: string | null;
  readonly tags: readonly string[];
  readonly data: Readonly<Record<string, unknown>> | null;
}

/*
 * Error codes: since October 2024 the API answers the root cause directly (no 1004
 * "DNS Validation Error" wrapper). 9003, 9005 and 9021 are codes seen from the real API;
 * the others are close stand-ins in the same 9000 range.
 */
function invalid(code: number, message: string): CfError {
  return badRequest(code, message);
}

const LABEL = /^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$/;

function validHostname(host: string, allowWildcard: boolean): boolean {
  if (host.length === 0 || host.length > 253) return false;
  const labels = host.split('.');
  return labels.every((label, i) => (allowWildcard && i === 0 && label === '*') || LABEL.test(label));
}

function asciiHost(raw: string): string {
  const lowered = raw.trim().toLowerCase().replace(/\.$/, '');
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(lowered)) return lowered;
  return domainToASCII(lowered);
}

/** Cloudflare stores fully-qualified names: `@` is the apex, a relative name gets the zone appended. */
function normalizeDnsName(raw: unknown, zoneName: string): string {
  if (typeof raw !== 'string' || raw.trim() === '') throw invalid(9000, 'DNS name is invalid.');
  let name = raw.trim() === '@' ? zoneName : asciiHost(raw);
  if (name !== zoneName && !name.endsWith(`.${zoneName}`)) name = `${name}.${zoneName}`;
  if (!validHostname(name, true)) throw invalid(9000, 'DNS name is invalid.');
  return name;
}

function contentError(type: string): CfError {
  if (type === 'A') return invalid(9005, 'Content for A record must be a valid IPv4 address.');
  if (type === 'AAAA') return invalid(9006, 'Content for AAAA record must be a valid IPv6 address.');
  return invalid(9007, `Content for ${type} record is invalid.`);
}

function integerIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function contentFromData(type: string, data: Record<string, unknown>): string | null {
  if (type === 'SRV') {
    const { priority, weight, port, target } = data;
    if (!integerIn(priority, 0, 65535) || !integerIn(weight, 0, 65535) || !integerIn(port, 0, 65535))
      return null;
    if (typeof target !== 'string' || !validHostname(asciiHost(target), false)) return null;
    return `${weight} ${port} ${asciiHost(target)}`;
  }
  if (type === 'CAA') {
    const { flags, tag, value } = data;
    if (!integerIn(flags, 0, 255) || typeof tag !== 'string' || typeof value !== 'string') return null;
    if (!['issue', 'issuewild', 'iodef'].includes(tag)) return null;
    return `${flags} ${tag} "${value}"`;
  }
  const parts = Object.values(data).filter((v) => typeof v === 'string' || typeof v === 'number');
  return parts.length > 0 ? parts.join(' ') : null;
}

function validateContent(type: string, name: string, input: Record<string, unknown>): string {
  const raw = input.content;
  if (raw === undefined && input.data && typeof input.data === 'object' && !Array.isArray(input.data)) {
    const derived = contentFromData(type, input.data as Record<string, unknown>);
    if (derived === null) throw contentError(type);
    return derived;
  }
  if (typeof raw !== 'string' || raw.trim() === '') throw contentError(type);
  const content = raw.trim();
  if (type === 'A') {
    if (!isIPv4(content)) throw contentError(type);
    return content;
  }
  if (type === 'AAAA') {
    if (!isIPv6(content)) throw contentError(type);
    return content.toLowerCase();
  }
  if (HOSTNAME_CONTENT_TYPES.has(type)) {
    const host = asciiHost(content);
    if (!validHostname(host, false) || (type === 'CNAME' && host === name)) throw contentError(type);
    return host;
  }
  if (type === 'TXT') {
    if (raw.length > MAX_TXT_CONTENT) {
      throw invalid(9101, `Content for TXT record is too long (at most ${MAX_TXT_CONTENT} characters).`);
    }
    return raw;
  }
  return content;
}

/**
 * Validates a record body as POST/PUT (full) or PATCH (`previous` holds the current record;
 * only the fields present in `input` change).
 */
export function validateDnsRecord(
  input: unknown,
  zoneName: string,
  previous?: DnsRecordFields,
): DnsRecordFields {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw invalid(9207, 'Request body is invalid.');
  }
  const body = input as Record<string, unknown>;
  const rawType = body.type ?? previous?.type;
  if (typeof rawType !== 'string' || !DNS_RECORD_TYPES.has(rawType.toUpperCase())) {
    throw invalid(9020, 'Invalid DNS record type');
  }
  const type = rawType.toUpperCase();
  const name = body.name !== undefined || !previous ? normalizeDnsName(body.name, zoneName) : previous.name;

  const contentGiven = body.content !== undefined || body.data !== undefined;
  let content: string;
  if (contentGiven || !previous) content = validateContent(type, name, body);
  else if (type !== previous.type || name !== previous.name) {
    content = validateContent(type, name, { content: previous.content });
  } else content = previous.content;

  const proxiedRaw = body.proxied !== undefined ? body.proxied : (previous?.proxied ?? false);
  if (typeof proxiedRaw !== 'boolean') throw invalid(9003, "Invalid 'proxied' value, must be a boolean");
  if (proxiedRaw && !PROXIABLE_TYPES.has(type)) throw invalid(9004, 'This record type cannot be proxied.');

  const ttlRaw = body.ttl !== undefined ? body.ttl : (previous?.ttl ?? 1);
  if (
    typeof ttlRaw !== 'number' ||
    !Number.isInteger(ttlRaw) ||
    !(ttlRaw === 1 || (ttlRaw >= 60 && ttlRaw <= 86400))
  ) {
    throw invalid(9021, 'Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.');
  }

  let priority: number | null = null;
  if (PRIORITY_TYPES.has(type)) {
    const dataPriority =
      body.data && typeof body.data === 'object'
        ? (body.data as Record<string, unknown>).priority
        : undefined;
    const raw = body.priority ?? dataPriority ?? previous?.priority ?? undefined;
    if (!integerIn(raw, 0, 65535)) {
      throw invalid(9100, `Priority must be set for ${type} records (an integer between 0 and 65535).`);
    }
    priority = raw;
  }

  const commentRaw = body.comment !== undefined ? body.comment : (previous?.comment ?? null);
  if (commentRaw !== null && (typeof commentRaw !== 'string' || commentRaw.length > MAX_COMMENT)) {
    throw invalid(9102, `Invalid 'comment' value, must be a string of at most ${MAX_COMMENT} characters`);
  }

  const tagsRaw = body.tags !== undefined ? body.tags : (previous?.tags ?? []);
  if (!Array.isArray(tagsRaw) || !tagsRaw.every((t) => typeof t === 'string' && t.length > 0)) {
    throw invalid(9102, "Invalid 'tags' value, must be an array of strings");
  }

  const dataRaw = body.data !== undefined ? body.data : (previous?.data ?? null);
  const data =
    dataRaw && typeof dataRaw === 'object' && !Array.isArray(dataRaw)
      ? (dataRaw as Record<string, unknown>)
      : null;

  return {
    type,
    name,
    content,
    // Proxied records answer with Cloudflare's edge, so their TTL is always "automatic".
    ttl: proxiedRaw ? 1 : ttlRaw,
    proxied: proxiedRaw,
    priority,
    comment: commentRaw === '' ? null : commentRaw,
    tags: tagsRaw as string[],
    data,
  };
}

export function isProxiable(type: string): boolean {
  return PROXIABLE_TYPES.has(type);
}

/**
 * The real API refuses an A/AAAA/CNAME next to a CNAME of the same name (81053) and an exact
 * duplicate of any record (81057).
 */
export function findConflict(candidate: DnsRecordFields, others: Iterable<DnsRecordFields>): CfError | null {
  let duplicate = false;
  for (const other of others) {
    if (other.name !== candidate.name) continue;
    const cnameClash =
      HOST_CONFLICT_TYPES.has(candidate.type) &&
      HOST_CONFLICT_TYPES.has(other.type) &&
      (candidate.type === 'CNAME' || other.type === 'CNAME');
    if (cnameClash) {
      return badRequest(81053, 'An A, AAAA, or CNAME record with that host already exists.');
    }
    if (
      other.type === candidate.type &&
      other.content === candidate.content &&
      other.priority === candidate.priority
    ) {
      duplicate = true;
    }
  }
  return duplicate ? badRequest(81057, 'Record already exists.') : null;
}
