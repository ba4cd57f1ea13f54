import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from './audit-event.ts';
import { EXPORT_FORMATS } from './export-formats.ts';
import { createAuditExportStream, formatAuditEvents } from './export-stream.ts';
import { syntheticEvent } from './test-support/audit-event-fixtures.ts';

const TOTAL = 100_000;

/** A cursor-like source that records how far it has been pulled and whether it was closed. */
function countingSource(total: number): {
  events: AsyncGenerator<AuditEvent>;
  pulled: () => number;
  closed: () => boolean;
} {
  let pulled = 0;
  let closed = false;
  async function* events(): AsyncGenerator<AuditEvent> {
    try {
      for (let seq = 1; seq <= total; seq += 1) {
        pulled = seq;
        yield syntheticEvent(seq);
      }
    } finally {
      closed = true;
    }
  }
  return { events: events(), pulled: () => pulled, closed: () => closed };
}

describe('streaming export', () => {
  it.each(EXPORT_FORMATS)('streams 100,000 %s events while pulling the source lazily', async (format) => {
    const source = countingSource(TOTAL);
    const stream = createAuditExportStream(source.events, format);
    let lines = 0;
    let maxAhead = 0;
    let partial = '';
    let lastSeq = 0;
    for await (const chunk of stream) {
      const text = partial + (chunk as Buffer).toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines += 1;
        if (format !== 'cef') {
          const parsed = JSON.parse(line);
          lastSeq = parsed.seq ?? parsed.metadata.sequence;
        }
      }
      // The source may run ahead of the consumer by the stream's buffer, never by the export.
      maxAhead = Math.max(maxAhead, source.pulled() - lines);
      if (lines % 10_000 < 100) {
        // Give an eager implementation every chance to run ahead while we idle.
        for (let i = 0; i < 5; i += 1) await nextTurn();
        maxAhead = Math.max(maxAhead, source.pulled() - lines);
      }
    }
    expect(partial).toBe('');
    expect(lines).toBe(TOTAL);
    if (format !== 'cef') expect(lastSeq).toBe(TOTAL);
    expect(source.closed()).toBe(true);
    expect(maxAhead).toBeLessThan(2_000);
  });

  it('stops pulling and closes the source when the consumer goes away', async () => {
    const source = countingSource(TOTAL);
    const stream = createAuditExportStream(source.events, 'ndjson');
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    await iterator.next();
    stream.destroy();
    for (let i = 0; i < 20; i += 1) await nextTurn();
    expect(source.closed()).toBe(true);
    expect(source.pulled()).toBeLessThan(2_000);
  });

  it('joins lines into bounded chunks', async () => {
    const chunks: string[] = [];
    for await (const chunk of formatAuditEvents([1, 2, 3, 4, 5].map(syntheticEvent), 'ndjson', {
      chunkChars: 1,
    })) {
      chunks.push(chunk);
    }
    expect(chunks).toHaveLength(5);
    const all: string[] = [];
    for await (const chunk of formatAuditEvents([1, 2, 3].map(syntheticEvent), 'cef')) all.push(chunk);
    expect(all).toHaveLength(1);
    expect(all[0]?.split('\n')).toHaveLength(4);
  });

  it('emits nothing for an empty range', async () => {
    const chunks: string[] = [];
    for await (const chunk of createAuditExportStream([], 'ocsf')) chunks.push(String(chunk));
    expect(chunks).toEqual([]);
  });
});
