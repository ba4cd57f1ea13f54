/**
 * An audit event as `GET /api/v1/audit/events` answers it, for tests that read the trail over
 * the API: the fields they look at (the API sends more).
 */
export interface AuditEventView {
  id: string;
  seq: number;
  kind: string;
  action: string;
  outcome: string;
  execution_id: string | null;
  intent_id?: string | null;
  duration_ms: number | null;
  caller: { type: string; id: string | null };
  details?: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
  upstream: { method: string; path: string; path_template: string | null; status: number | null } | null;
}
