import type { AuditEvent } from '../audit-event.ts';

const HASH = 'a'.repeat(64);

/** A tool call as the service records it; override what a test is about. */
export function toolCallEvent(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: 'aud_0123456789abcdefghij',
    tenant_id: 'ten_0123456789abcdefghij',
    seq: 42,
    occurred_at: '2026-01-01T12:00:00.123Z',
    kind: 'tool_call',
    action: 'tool.execute',
    outcome: 'success',
    execution_id: 'exe_0123456789abcdefghij',
    identifier: 'user-42',
    caller: {
      type: 'mcp_token',
      id: 'mcp_0123456789abcdefghij',
      client_name: 'cursor',
      client_version: '1.2.3',
      ip: '203.0.113.7',
    },
    agent_run_id: 'run-7',
    tool_name: 'cloudflare_execute',
    connected_account_id: 'ca_0123456789abcdefghij',
    upstream: null,
    error: null,
    duration_ms: 120,
    request_bytes: 300,
    response_bytes: 4000,
    code_sha256: 'b'.repeat(64),
    code: 'async () => cloudflare.request({ method: "GET", path: "/zones" })',
    prev_hash: HASH,
    hash: 'c'.repeat(64),
    ...overrides,
  };
}

export function upstreamRequestEvent(
  method: string,
  overrides: Partial<AuditEvent> = {},
  status: number | null = 200,
): AuditEvent {
  return toolCallEvent({
    kind: 'upstream_request',
    action: 'cloudflare.request',
    tool_name: 'cloudflare_execute',
    code: null,
    code_sha256: null,
    upstream: {
      method,
      path_template: '/zones/{zone_id}/dns_records',
      path: '/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records',
      status,
      cf_ray: '8f1e2d3c4b5a6978-AMS',
    },
    ...overrides,
  });
}

/** `count` distinct events with increasing sequence numbers and ids. */
export function eventSeries(count: number, start = 1): AuditEvent[] {
  return Array.from({ length: count }, (_, i) => syntheticEvent(start + i));
}

export function syntheticEvent(seq: number): AuditEvent {
  return toolCallEvent({ id: `aud_${seq.toString(36).padStart(20, '0')}`, seq });
}
