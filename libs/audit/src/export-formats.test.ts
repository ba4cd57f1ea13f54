import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from './audit-event.ts';
import { checkpointEvent } from './audit-records.ts';
import { toCefLine } from './cef-format.ts';
import {
  EXPORT_FORMATS,
  exportContentType,
  formatAuditLine,
  isExportFormat,
  toNdjsonLine,
} from './export-formats.ts';
import { OCSF_SCHEMA_VERSION, toOcsfEvent, toOcsfLine } from './ocsf-format.ts';
import { toolCallEvent, upstreamRequestEvent } from './test-support/audit-event-fixtures.ts';

interface ParsedCef {
  readonly header: string[];
  readonly extensions: Map<string, string>;
}

/**
 * A deliberately independent CEF reader: split the header on unescaped pipes, then find
 * extension keys at unescaped `=` signs, and undo the value escapes.
 */
function parseCef(line: string): ParsedCef {
  expect(line.endsWith('\n')).toBe(true);
  const body = line.slice(0, -1);
  const header: string[] = [];
  let current = '';
  let i = 0;
  while (header.length < 7) {
    const char = body[i];
    if (char === undefined) throw new Error('truncated CEF header');
    if (char === '\\') {
      current += body[i + 1];
      i += 2;
    } else if (char === '|') {
      header.push(current);
      current = '';
      i += 1;
    } else {
      current += char;
      i += 1;
    }
  }
  const extension = body.slice(i);
  // Positions of unescaped `=`; the key is the word right before each one.
  const keys: Array<{ key: string; keyStart: number; valueStart: number }> = [];
  for (let j = 0; j < extension.length; j += 1) {
    if (extension[j] === '\\') {
      j += 1;
      continue;
    }
    if (extension[j] === '=') {
      const keyMatch = /[A-Za-z0-9_]+$/.exec(extension.slice(0, j));
      if (!keyMatch) throw new Error(`no key before = at ${j}`);
      keys.push({ key: keyMatch[0], keyStart: j - keyMatch[0].length, valueStart: j + 1 });
    }
  }
  const extensions = new Map<string, string>();
  keys.forEach(({ key, valueStart }, index) => {
    const next = keys[index + 1];
    // Values end one space before the next key.
    const raw = extension.slice(valueStart, next ? next.keyStart - 1 : extension.length);
    const value = raw.replace(/\\(.)/g, (_, escaped: string) =>
      escaped === 'n' ? '\n' : escaped === 'r' ? '\r' : escaped,
    );
    expect(extensions.has(key), `duplicate key ${key}`).toBe(false);
    extensions.set(key, value);
  });
  return { header, extensions };
}

const HOSTILE = [
  'pipe|pipe',
  'equals=sign a=b',
  'back\\slash\\',
  'cr\rlf\ncrlf\r\n',
  'nul\u0000bell\u0007',
  'unicode: ünïcødé 🦀 日本語 \u2028 \u2029 \u0085',
  ' leading and trailing spaces ',
  'fake=extension cs1=evil',
  '\\=\\|\\n',
].join(' § ');

function hostileEvent(): AuditEvent {
  return upstreamRequestEvent('POST', {
    outcome: 'error',
    action: `cloudflare.request|${HOSTILE}`,
    identifier: HOSTILE,
    agent_run_id: HOSTILE,
    tool_name: HOSTILE,
    code: `${HOSTILE}\n${'x'.repeat(100 * 1024)}`,
    error: { code: 'upstream_error', message: HOSTILE },
    caller: {
      type: 'api_key',
      id: 'key_abc',
      client_name: HOSTILE,
      client_version: '1\n2',
      ip: '2001:db8::1',
    },
    upstream: {
      method: 'POST',
      path_template: HOSTILE,
      path: `/zones/${'p'.repeat(100 * 1024)}`,
      status: 500,
      cf_ray: HOSTILE,
    },
  });
}

/** What survives CEF: controls and line separators without an escape become U+FFFD. */
function cefVisible(value: string): string {
  return value.replace(/(?![\t\r\n])\p{Cc}|[\u2028\u2029]/gu, '\uFFFD');
}

describe('NDJSON', () => {
  it('is the event as JSON on exactly one line', () => {
    const event = toolCallEvent();
    const line = toNdjsonLine(event);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toMatch(/[\r\n]/);
    expect(JSON.parse(line)).toEqual(event);
  });

  it('caps code only when asked', () => {
    const event = toolCallEvent({ code: 'y'.repeat(10_000) });
    expect(JSON.parse(toNdjsonLine(event)).code).toHaveLength(10_000);
    const capped = JSON.parse(toNdjsonLine(event, { maxCodeChars: 100 })).code as string;
    expect(capped).toHaveLength(100);
    expect(capped).toMatch(/\.\.\.\[truncated, 10000 chars\]$/);
  });
});

describe('OCSF API Activity', () => {
  it('maps a successful execute tool call', () => {
    const ocsf = toOcsfEvent(toolCallEvent(), { productVersion: '1.4.0' });
    expect(ocsf).toMatchObject({
      category_uid: 6,
      class_uid: 6003,
      activity_id: 99,
      activity_name: 'Execute',
      type_uid: 600399,
      severity_id: 1,
      status_id: 1,
      status: 'Success',
      time: Date.parse('2026-01-01T12:00:00.123Z'),
      duration: 120,
      metadata: {
        version: OCSF_SCHEMA_VERSION,
        product: { name: 'Warden', vendor_name: 'Warden', version: '1.4.0' },
        uid: 'aud_0123456789abcdefghij',
        correlation_uid: 'exe_0123456789abcdefghij',
        sequence: 42,
        tenant_uid: 'ten_0123456789abcdefghij',
      },
      actor: {
        user: { uid: 'user-42' },
        session: { credential_uid: 'mcp_0123456789abcdefghij' },
        app_name: 'cursor',
      },
      api: {
        operation: 'cloudflare_execute',
        service: { name: 'Warden' },
        request: { uid: 'aud_0123456789abcdefghij' },
      },
      src_endpoint: { ip: '203.0.113.7' },
      resources: [{ uid: 'ca_0123456789abcdefghij', type: 'connected_account' }],
      unmapped: {
        tool_name: 'cloudflare_execute',
        agent_run_id: 'run-7',
        code_sha256: 'b'.repeat(64),
        seq: 42,
        prev_hash: 'a'.repeat(64),
        hash: 'c'.repeat(64),
      },
    });
    expect(ocsf.http_request).toBeUndefined();
    expect(ocsf.api.response).toBeUndefined();
  });

  it.each([
    ['GET', 2, 'Read'],
    ['HEAD', 2, 'Read'],
    ['POST', 1, 'Create'],
    ['PUT', 3, 'Update'],
    ['patch', 3, 'Update'],
    ['DELETE', 4, 'Delete'],
    ['OPTIONS', 99, 'OPTIONS'],
  ] as const)('maps upstream %s to activity %i', (method, activityId, name) => {
    const ocsf = toOcsfEvent(upstreamRequestEvent(method));
    expect(ocsf.activity_id).toBe(activityId);
    expect(ocsf.activity_name).toBe(name);
    expect(ocsf.type_uid).toBe(600300 + activityId);
    expect(ocsf.http_request).toEqual({
      http_method: method.toUpperCase(),
      url: { path: '/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records' },
      length: 300,
    });
    expect(ocsf.http_response).toEqual({ code: 200, length: 4000 });
    expect(ocsf.api.operation).toBe(`${method.toUpperCase()} /zones/{zone_id}/dns_records`);
    expect(ocsf.api.service.name).toBe('Cloudflare API');
    expect(ocsf.api.response).toEqual({ code: 200 });
    expect(ocsf.unmapped.cf_ray).toBe('8f1e2d3c4b5a6978-AMS');
  });

  it.each([
    ['refused', 3, 'policy_denied'],
    ['error', 2, 'upstream_error'],
    ['timeout', 2, 'upstream_timeout'],
    ['rate_limited', 2, 'rate_limited'],
  ] as const)('marks %s as a failure with severity %i', (outcome, severityId, code) => {
    const event = upstreamRequestEvent('DELETE', { outcome, error: { code, message: 'no' } }, null);
    const ocsf = toOcsfEvent(event);
    expect(ocsf).toMatchObject({
      status_id: 2,
      status: 'Failure',
      status_detail: outcome,
      status_code: code,
      severity_id: severityId,
      api: { response: { error: code, error_message: 'no' } },
    });
    expect(ocsf.api.response?.code).toBeUndefined();
    expect(ocsf.http_response).toBeUndefined();
  });

  it('maps search, offboarding and connected-account changes', () => {
    expect(toOcsfEvent(toolCallEvent({ tool_name: 'cloudflare_search' })).activity_id).toBe(2);
    const offboard = toOcsfEvent(
      toolCallEvent({
        kind: 'offboarding',
        action: 'identity.offboard',
        tool_name: null,
        connected_account_id: null,
        caller: { type: 'admin', id: null, client_name: null, client_version: null, ip: null },
      }),
    );
    expect(offboard).toMatchObject({ activity_id: 4, type_uid: 600304 });
    // The offboarded identifier is what was acted on, not who acted.
    expect(offboard.actor).toEqual({ app_name: 'warden:admin' });
    expect(offboard.resources).toEqual([{ uid: 'user-42', type: 'identity' }]);
    expect(offboard.src_endpoint).toEqual({ svc_name: 'warden' });
    const verbs = { created: 1, rotated: 3, updated: 3, deleted: 4, revoked: 4, verified: 99 } as const;
    for (const [verb, id] of Object.entries(verbs)) {
      const event = toolCallEvent({ kind: 'connected_account', action: `connected_account.${verb}` });
      expect(toOcsfEvent(event).activity_id, verb).toBe(id);
    }
  });

  it('emits one parseable line and omits absent values', () => {
    const line = toOcsfLine(toolCallEvent({ execution_id: null, agent_run_id: null }));
    expect(line.split('\n')).toHaveLength(2);
    const parsed = JSON.parse(line);
    expect(parsed.metadata.correlation_uid).toBeUndefined();
    expect('agent_run_id' in parsed.unmapped).toBe(false);
  });
});

describe('product version', () => {
  it("is Warden's release from the repository's package.json in OCSF and CEF alike", () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    expect(toOcsfEvent(toolCallEvent()).metadata.product.version).toBe(version);
    expect(parseCef(toCefLine(upstreamRequestEvent('GET'))).header[3]).toBe(version);
    expect(JSON.parse(formatAuditLine(toolCallEvent(), 'ocsf')).metadata.product.version).toBe(version);
  });
});

describe('CEF', () => {
  it('writes the header and standard extension keys', () => {
    const line = toCefLine(upstreamRequestEvent('GET'), { productVersion: '1.4.0' });
    expect(
      line.startsWith('CEF:0|Warden|Warden|1.4.0|cloudflare.request|GET /zones/{zone_id}/dns_records|3|'),
    ).toBe(true);
    const { header, extensions } = parseCef(line);
    expect(header).toHaveLength(7);
    expect(Object.fromEntries(extensions)).toMatchObject({
      rt: String(Date.parse('2026-01-01T12:00:00.123Z')),
      externalId: 'aud_0123456789abcdefghij',
      cat: 'upstream_request',
      act: 'cloudflare.request',
      outcome: 'success',
      suser: 'user-42',
      suid: 'mcp_0123456789abcdefghij',
      src: '203.0.113.7',
      requestClientApplication: 'cursor/1.2.3',
      requestMethod: 'GET',
      request: '/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records',
      cs1: 'cloudflare_execute',
      cs1Label: 'Tool',
      cs3: '8f1e2d3c4b5a6978-AMS',
      cs3Label: 'CF-Ray',
      cn1: '42',
      cn1Label: 'Sequence',
      cn3: '200',
      flexString1: 'ten_0123456789abcdefghij',
      flexString2: '/zones/{zone_id}/dns_records',
    });
    expect(extensions.has('cs6')).toBe(false);
    expect(extensions.has('reason')).toBe(false);
  });

  it('ranks a refusal above an error above a success', () => {
    const severity = (event: AuditEvent): number => Number(parseCef(toCefLine(event)).header[6]);
    const refused = severity(toolCallEvent({ outcome: 'refused' }));
    const failed = severity(toolCallEvent({ outcome: 'error' }));
    const ok = severity(toolCallEvent());
    expect(refused).toBeGreaterThan(failed);
    expect(failed).toBeGreaterThan(ok);
  });

  it('escapes the exact characters the spec names', () => {
    const line = toCefLine(toolCallEvent({ action: 'a|b\\c', identifier: 'x=y\\z|w\r\nv' }));
    expect(line).toContain('|a\\|b\\\\c|');
    expect(line).toContain('suser=x\\=y\\\\z|w\\r\\nv ');
  });
});

describe('hostile input', () => {
  const event = hostileEvent();

  it.each(EXPORT_FORMATS)('%s emits exactly one line per event', (format) => {
    const line = formatAuditLine(event, format);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toMatch(/[\r\n\u0085\u2028\u2029]/);
  });

  it('NDJSON round-trips every value', () => {
    expect(JSON.parse(toNdjsonLine(event))).toEqual(event);
  });

  it('OCSF round-trips every value', () => {
    const parsed = JSON.parse(toOcsfLine(event));
    expect(parsed.actor.app_name).toBe(HOSTILE);
    expect(parsed.unmapped.code).toBe(event.code);
    expect(parsed.unmapped.path_template).toBe(HOSTILE);
    expect(parsed.http_request.url.path).toBe(event.upstream?.path);
    expect(parsed.api.response.error_message).toBe(HOSTILE);
    expect(parsed).toEqual(JSON.parse(JSON.stringify(toOcsfEvent(event))));
  });

  it('CEF recovers the original values, cut with a marker where too long', () => {
    const line = toCefLine(event);
    expect(line).not.toContain('\u0000');
    const { header, extensions } = parseCef(line);
    expect(header.slice(0, 3)).toEqual(['CEF:0', 'Warden', 'Warden']);
    // Header fields keep pipes and backslashes; newlines become spaces there.
    expect(header[4]).toBe(cefVisible(`cloudflare.request|${HOSTILE}`).replace(/[\r\n\t]/g, ' '));
    expect(header[6]).toBe('5');
    expect(extensions.get('suser')).toBe(cefVisible(HOSTILE));
    expect(extensions.get('cs4')).toBe(cefVisible(HOSTILE));
    expect(extensions.get('cs3')).toBe(cefVisible(HOSTILE));
    expect(extensions.get('msg')).toBe(cefVisible(HOSTILE));
    expect(extensions.get('requestClientApplication')).toBe(`${cefVisible(HOSTILE)}/1\n2`);
    expect(extensions.get('c6a2')).toBe('2001:db8::1');
    expect(extensions.get('c6a2Label')).toBe('Source IPv6 Address');
    const code = extensions.get('cs6') ?? '';
    expect(code).toHaveLength(4000);
    expect(code.startsWith(cefVisible(`${HOSTILE}\n`))).toBe(true);
    expect(code).toMatch(/\.\.\.\[truncated, \d+ chars\]$/);
    const request = extensions.get('request') ?? '';
    expect(request).toHaveLength(1023);
    expect(request.startsWith('/zones/ppp')).toBe(true);
    // The injected "cs1=evil" stayed inside a value.
    expect(extensions.get('cs1')).toBe(cefVisible(HOSTILE));
  });

  it('never splits a surrogate pair when cutting', () => {
    const line = toCefLine(toolCallEvent({ identifier: '🦀'.repeat(2000) }));
    const suser = parseCef(line).extensions.get('suser') ?? '';
    expect(suser.length).toBeLessThanOrEqual(1023);
    expect(suser.isWellFormed()).toBe(true);
  });

  it('replaces lone surrogates, which UTF-8 cannot carry', () => {
    const line = toCefLine(toolCallEvent({ identifier: 'a\ud800b' }));
    expect(parseCef(line).extensions.get('suser')).toBe('a\uFFFDb');
  });
});

describe('format names', () => {
  it('recognizes the three formats and their content types', () => {
    expect(EXPORT_FORMATS.filter(isExportFormat)).toEqual(['ndjson', 'ocsf', 'cef']);
    expect(isExportFormat('csv')).toBe(false);
    expect(exportContentType('cef')).toMatch(/^text\/plain/);
    expect(exportContentType('ocsf')).toMatch(/^application\/x-ndjson/);
  });
});

describe('signed checkpoints in every format', () => {
  const checkpoint = {
    id: 'chk_abcdefghijklmnopqrst',
    tenant_id: 'ten_1',
    number: 3,
    seq: 120,
    hash: 'a'.repeat(64),
    head_at: '2026-12-10T10:00:00.000Z',
    signed_at: '2026-12-10T10:05:00.000Z',
    reason: 'interval' as const,
    previous_digest: 'b'.repeat(64),
    anchors: [],
    digest: 'c'.repeat(64),
    key_id: 'arn:aws:kms:us-east-1:111122223333:key/k',
    algorithm: 'ECDSA_SHA_256',
    signature: 'MEUCIQ+sig/base64==',
  };
  const event = checkpointEvent(checkpoint);

  it('carries the signed fields, the digest and the signature a SIEM needs to check it alone', () => {
    expect(JSON.parse(toNdjsonLine(event))).toMatchObject({
      kind: 'audit_checkpoint',
      seq: 120,
      hash: checkpoint.digest,
      prev_hash: checkpoint.previous_digest,
      details: { checkpoint },
    });
    const ocsf = toOcsfEvent(event);
    expect(ocsf.activity_name).toBe('Checkpoint');
    expect(JSON.parse(String(ocsf.unmapped.checkpoint))).toEqual(checkpoint);
    const cef = parseCef(toCefLine(event));
    expect(cef.extensions.get('cs6')).toBe(checkpoint.signature);
    expect(cef.extensions.get('cs4')).toBe(checkpoint.digest);
    expect(cef.extensions.get('cs1')).toBe(checkpoint.key_id);
    expect(JSON.parse(cef.extensions.get('cs3') ?? '')).toEqual(checkpoint);
  });
});
