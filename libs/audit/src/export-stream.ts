import { Readable } from 'node:stream';
import type { AuditEvent } from './audit-event.ts';
import { formatAuditLine } from './export-formats.ts';
import type { ExportFormat } from './export-formats.ts';
import type { FormatOptions } from './format-common.ts';

export interface ExportStreamOptions extends FormatOptions {
  /**
   * Lines are joined into chunks of about this many characters: one write per line would
   * cost a syscall each on a 100,000-row export, and a chunk is still a fixed memory bound.
   */
  readonly chunkChars?: number;
}

/**
 * Formats events lazily: the source is pulled only when the consumer wants the next chunk,
 * so a database cursor behind `events` is read at the speed of the HTTP client. Returning
 * early (client gone) closes the source through its `return()`.
 */
export async function* formatAuditEvents(
  events: AsyncIterable<AuditEvent> | Iterable<AuditEvent>,
  format: ExportFormat,
  options: ExportStreamOptions = {},
): AsyncGenerator<string, void, undefined> {
  const chunkChars = options.chunkChars ?? 64 * 1024;
  let chunk = '';
  for await (const event of events) {
    chunk += formatAuditLine(event, format, options);
    if (chunk.length >= chunkChars) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}

/**
 * A byte stream of the export, with backpressure: Readable.from only asks the generator for
 * more when its buffer drains below the high-water mark. Destroying the stream (the client
 * disconnected) ends the generator and the source iterator with it.
 */
export function createAuditExportStream(
  events: AsyncIterable<AuditEvent> | Iterable<AuditEvent>,
  format: ExportFormat,
  options: ExportStreamOptions = {},
): Readable {
  return Readable.from(formatAuditEvents(events, format, options), { objectMode: false });
}
