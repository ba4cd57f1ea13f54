import type { AuditEvent } from './audit-event.ts';
import { toCefLine } from './cef-format.ts';
import { toJsonLine, withCodeCapped } from './format-common.ts';
import type { FormatOptions } from './format-common.ts';
import { toOcsfLine } from './ocsf-format.ts';

export const EXPORT_FORMATS = ['ndjson', 'ocsf', 'cef'] as const;

export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export function isExportFormat(value: unknown): value is ExportFormat {
  return typeof value === 'string' && (EXPORT_FORMATS as readonly string[]).includes(value);
}

/** The event exactly as `GET /api/v1/audit/events` returns it, as a single JSON line. */
export function toNdjsonLine(event: AuditEvent, options: FormatOptions = {}): string {
  return toJsonLine(withCodeCapped(event, options.maxCodeChars));
}

export function formatAuditLine(
  event: AuditEvent,
  format: ExportFormat,
  options: FormatOptions = {},
): string {
  switch (format) {
    case 'ndjson':
      return toNdjsonLine(event, options);
    case 'ocsf':
      return toOcsfLine(event, options);
    case 'cef':
      return toCefLine(event, options);
  }
}

/** Content-Type of an export body: every format is one event per line. */
export function exportContentType(format: ExportFormat): string {
  return format === 'cef' ? 'text/plain; charset=utf-8' : 'application/x-ndjson; charset=utf-8';
}
