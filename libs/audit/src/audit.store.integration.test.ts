import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_FOLDER, createTestDatabase, recordQueries } from '@warden/testing';
import { createDb, migrateToLatest } from '@warden/db';
import type { TestDatabase } from '@warden/testing';
import type { AuditRecordInput } from './audit.store.ts';
import { createAuditStore, expiryDay } from './audit.store.ts';
import { verifyChain } from './audit-verify.ts';
import { listPartitions, runAuditMaintenance } from './audit-retention.ts';
import { ESCAPE_MARK, unescapeAuditText } from './audit-text.ts';

/** A string of random code units: NUL, lone surrogates, U+FFFF, pairs, ASCII, controls. */
function randomText(random: () => number, maxLength = 40): string {
  const pool = [0x0, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xffff, 0xfffe, 0x7f, 0x1b, 0x5c, 0x22, 0x2028];
  let text = random() < 0.2 ? ESCAPE_MARK : '';
  const length = Math.floor(random() * maxLength);
  for (let i = 0; i < length; i++) {
    const pick = random();
    if (pick < 0.3) text += String.fromCharCode(pool[Math.floor(random() * pool.length)] as number);
    else if (pick < 0.4) text += '😀';
    else text += String.fromCharCode(0x20 + Math.floor(random() * 0x5f));
  }
  return text;
}

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function record(at: Date, overrides: Partial<AuditRecordInput> = {}): AuditRecordInput {
  return {
    occurred_at: at.toISOString(),
    kind: 'tool_call',
    action: 'tool.execute',
    outcome: 'success',
    execution_id: 'exe_1',
    identifier: 'alice',
    caller: { type: 'api_key', id: 'key_1', client_name: null, client_version: null, ip: '127.0.0.1' },
    agent_run_id: null,
    tool_name: 'cloudflare_execute',
    connected_account_id: 'ca_1',
    upstream: null,
    error: null,
    duration_ms: 12,
    request_bytes: 10,
    response_bytes: 20,
    code_sha256: null,
    code: null,
    ...overrides,
  };
}

describe('audit store', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    await t.drop();
  });

  it('chains records per tenant and verifies them', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const now = new Date();
    await runAuditMaintenance(t.db.kysely, { now, retentionDays: [90] });
    const first = await store.append('ten_chain', [record(now), record(now, { outcome: 'refused' })], {
      retentionDays: 90,
    });
    const second = await store.append('ten_chain', [record(now)], { retentionDays: 90 });
    expect(first.map((e) => e.seq)).toEqual([1, 2]);
    expect(second[0]?.prev_hash).toBe(first[1]?.hash);
    await store.append('ten_other', [record(now)], { retentionDays: 90 });
    expect(await verifyChain(t.db.kysely, 'ten_chain')).toMatchObject({ ok: true, checked: 3 });
    const { rows } = await sql<{ n: string }>`select count(*)::text as n from audit_events_default`.execute(
      t.db.kysely,
    );
    expect(rows[0]?.n).toBe('0');
  });

  it('keeps chains consistent under concurrent appends', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const now = new Date();
    await Promise.all(
      Array.from({ length: 20 }, () =>
        store.append('ten_conc', [record(now), record(now)], { retentionDays: 90 }),
      ),
    );
    expect(await verifyChain(t.db.kysely, 'ten_conc')).toMatchObject({ ok: true, checked: 40 });
  });

  it('keeps one chain when two replicas append to the same tenant', async () => {
    // Each store caches the head it last wrote; the other replica's appends make that
    // guess stale, and the append must notice, reread the head and rebuild its hashes.
    const a = createAuditStore({ db: t.db.kysely });
    const b = createAuditStore({ db: t.db.kysely });
    const now = new Date();
    const first = await a.append('ten_replicas', [record(now)], { retentionDays: 90 });
    const second = await b.append('ten_replicas', [record(now), record(now)], { retentionDays: 90 });
    const third = await a.append('ten_replicas', [record(now)], { retentionDays: 90 });
    expect([...first, ...second, ...third].map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(third[0]?.prev_hash).toBe(second[1]?.hash);
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 ? a : b).append('ten_replicas', [record(now), record(now)], { retentionDays: 90 }),
      ),
    );
    expect(await verifyChain(t.db.kysely, 'ten_replicas')).toMatchObject({ ok: true, checked: 64 });
    const { rows } = await sql<{ seq: string }>`
      select seq::text from audit_chain_heads where tenant_id = 'ten_replicas'`.execute(t.db.kysely);
    expect(rows[0]?.seq).toBe('64');
  });

  it('writes concurrent appends of a tenant together and gives each caller its own records', async () => {
    const { plugin, queries } = recordQueries();
    const db = t.db.kysely.withPlugin(plugin);
    const store = createAuditStore({ db });
    const now = new Date();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        store.append('ten_batch', [record(now, { execution_id: `exe_${i}` })], { retentionDays: 90 }),
      ),
    );
    results.forEach((events, i) => {
      expect(events).toHaveLength(1);
      expect(events[0]?.execution_id).toBe(`exe_${i}`);
    });
    expect(results.map((events) => events[0]?.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(await verifyChain(t.db.kysely, 'ten_batch')).toMatchObject({ ok: true, checked: 10 });
    // The first append goes alone; the nine that queued behind it share one statement.
    expect(queries.filter((q) => q.text.includes('insert into audit_events'))).toHaveLength(2);
  });

  it('reports each append once as it settles, committed or failed, with the time its caller waited', async () => {
    const timings: Array<{ ms: number; committed: boolean }> = [];
    const store = createAuditStore({ db: t.db.kysely, onAppended: (appended) => timings.push(appended) });
    const now = new Date();
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        store.append('ten_timed', [record(now, { execution_id: `exe_${i}` })], { retentionDays: 90 }),
      ),
    );
    expect(timings).toHaveLength(5);
    expect(timings.every((timing) => timing.committed && timing.ms > 0)).toBe(true);

    // A database that cannot be reached: the append fails, and is reported as failed.
    const down = await createDb({
      kind: 'postgres',
      url: 'postgres://postgres@127.0.0.1:1/none',
      poolSize: 1,
    });
    try {
      const failing = createAuditStore({ db: down.kysely, onAppended: (appended) => timings.push(appended) });
      await expect(failing.append('ten_timed', [record(now)], { retentionDays: 90 })).rejects.toMatchObject({
        code: 'unavailable',
      });
    } finally {
      await down.close();
    }
    expect(timings).toHaveLength(6);
    expect(timings[5]?.committed).toBe(false);
  });

  it('appends and verifies on PGlite too (the embedded default)', async () => {
    const lite = await createDb({ kind: 'pglite', dataDir: null });
    try {
      await migrateToLatest(lite.kysely, MIGRATIONS_FOLDER);
      const now = new Date();
      await runAuditMaintenance(lite.kysely, { now, retentionDays: [90] });
      const store = createAuditStore({ db: lite.kysely });
      await store.probe('ten_lite', { retentionDays: 90 });
      await Promise.all(
        Array.from({ length: 5 }, () =>
          store.append('ten_lite', [record(now), record(now)], { retentionDays: 90 }),
        ),
      );
      // A second store (a restart) starts without a cached head.
      await createAuditStore({ db: lite.kysely }).append('ten_lite', [record(now)], { retentionDays: 90 });
      expect(await verifyChain(lite.kysely, 'ten_lite')).toMatchObject({ ok: true, checked: 11 });
    } finally {
      await lite.close();
    }
  });

  it('audit verify finds an edited record and a deleted record', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const now = new Date();
    const events = await store.append('ten_tamper', [record(now), record(now), record(now), record(now)], {
      retentionDays: 90,
    });
    await sql`update audit_events set outcome = 'success', error_code = null, upstream_status = 200, duration_ms = 1 where id = ${events[1]!.id}`.execute(
      t.db.kysely,
    );
    let report = await verifyChain(t.db.kysely, 'ten_tamper');
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 2, kind: 'edited' }));

    await sql`delete from audit_events where id = ${events[2]!.id}`.execute(t.db.kysely);
    report = await verifyChain(t.db.kysely, 'ten_tamper');
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 3, kind: 'missing' }));

    await sql`delete from audit_events where id = ${events[3]!.id}`.execute(t.db.kysely);
    report = await verifyChain(t.db.kysely, 'ten_tamper');
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'truncated' }));
  });

  it('pages through events with filters and streams a range in order', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const base = new Date('2030-01-01T00:00:00Z');
    await runAuditMaintenance(t.db.kysely, { now: base, retentionDays: [90] });
    const inputs = Array.from({ length: 25 }, (_, i) =>
      record(new Date(base.getTime() + i * 1000), {
        identifier: i % 2 ? 'bob' : 'alice',
        outcome: i % 5 === 0 ? 'refused' : 'success',
      }),
    );
    await store.append('ten_query', inputs, { retentionDays: 90 });
    const seen: number[] = [];
    let pageToken: string | undefined;
    do {
      const page = await store.query('ten_query', { pageSize: 7, ...(pageToken ? { pageToken } : {}) });
      seen.push(...page.events.map((e) => e.seq));
      pageToken = page.nextPageToken ?? undefined;
    } while (pageToken);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(
      (await store.query('ten_query', { identifier: 'bob', outcome: 'refused' })).events.map((e) => e.seq),
    ).toEqual([6, 16]);
    const streamed: number[] = [];
    for await (const e of store.stream(
      'ten_query',
      { from: new Date(base.getTime() + 5000), to: new Date(base.getTime() + 15000) },
      3,
    )) {
      streamed.push(e.seq);
    }
    expect(streamed).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  });

  it('creates partitions ahead, rescues the default partition and drops expired days with anchors', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const day = (offset: number, time = '12:00:00') =>
      new Date(`${new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10)}T${time}Z`);
    const name = (d: Date) => `audit_events_p${d.toISOString().slice(0, 10).replaceAll('-', '')}`;
    // Days in the past, so the database's clock agrees they have expired when their turn comes.
    const day0 = day(-6);
    // No partition yet for these rows: they land in the default partition.
    const early = await store.append('ten_ret', [record(day0), record(day0)], { retentionDays: 1 });
    expect(expiryDay(day0, 1)).toBe(day(-5).toISOString().slice(0, 10));
    let report = await runAuditMaintenance(t.db.kysely, { now: day0, retentionDays: [1] });
    expect(report.rescued).toBe(2);
    expect((await listPartitions(t.db.kysely)).map((p) => p.name)).toContain(name(day(-5)));
    expect(report.created).toContain(name(day(-4)));
    const { rows } = await sql<{ n: string }>`select count(*)::text as n from audit_events_default`.execute(
      t.db.kysely,
    );
    expect(rows[0]?.n).toBe('0');
    await store.append('ten_ret', [record(day(-5, '08:00:00'))], { retentionDays: 1 });

    // A day later the day expiring at day -5 is dropped, not deleted from.
    report = await runAuditMaintenance(t.db.kysely, { now: day(-4, '00:05:00'), retentionDays: [1] });
    expect(report.dropped).toContain(name(day(-5)));
    expect((await listPartitions(t.db.kysely)).map((p) => p.name)).not.toContain(name(day(-5)));
    const remaining = await store.query('ten_ret', {});
    expect(remaining.events.map((e) => e.seq)).toEqual([3]);
    const verify = await verifyChain(t.db.kysely, 'ten_ret');
    expect(verify).toMatchObject({ ok: true, checked: 1, expired: 2 });
    expect(early[1]?.hash).toBe(remaining.events[0]?.prev_hash);

    // The database's clock decides what has expired: a caller claiming a later "now" drops nothing
    // that has not, and the drop function refuses such a day outright.
    const live = name(day(2));
    await runAuditMaintenance(t.db.kysely, { now: new Date(), retentionDays: [2] });
    expect((await listPartitions(t.db.kysely)).map((p) => p.name)).toContain(live);
    report = await runAuditMaintenance(t.db.kysely, { now: day(30), retentionDays: [2] });
    expect(report.dropped).not.toContain(live);
    const refused = await sql<{ dropped: boolean }>`select audit_drop_partition(${live}) as dropped`.execute(
      t.db.kysely,
    );
    expect(refused.rows[0]?.dropped).toBe(false);
    expect((await listPartitions(t.db.kysely)).map((p) => p.name)).toContain(live);
  });

  it('the write probe succeeds without leaving a row and fails when inserts are impossible', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    await store.probe('ten_probe', { retentionDays: 90 });
    const { rows } = await sql<{
      n: string;
    }>`select count(*)::text as n from audit_events where tenant_id = 'ten_probe'`.execute(t.db.kysely);
    expect(rows[0]?.n).toBe('0');
    await sql`alter table audit_events_default rename to audit_events_default_off`.execute(t.db.kysely);
    await sql`alter table audit_events detach partition audit_events_default_off`.execute(t.db.kysely);
    try {
      // A day with no partition (no maintenance ran for a 399-day retention) and no default: the insert path is broken.
      await expect(store.probe('ten_probe', { retentionDays: 399 })).rejects.toMatchObject({
        code: 'unavailable',
      });
    } finally {
      await sql`alter table audit_events attach partition audit_events_default_off default`.execute(
        t.db.kysely,
      );
      await sql`alter table audit_events_default_off rename to audit_events_default`.execute(t.db.kysely);
    }
  });

  it('stores any string an agent or Cloudflare can produce, reversibly, and keeps the chain verifiable', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const random = seeded(20261204);
    const originals: string[][] = [];
    const appends = Array.from({ length: 40 }, (_, i) => {
      const texts = [randomText(random), randomText(random), randomText(random), randomText(random, 400)];
      originals.push(texts);
      return store.append(
        'ten_fuzz',
        [
          record(new Date(), {
            execution_id: `exe_${i}`,
            identifier: texts[0] as string,
            agent_run_id: texts[1] as string,
            error: { code: 'execution_error', message: texts[2] as string },
            code: texts[3] as string,
            details: { [texts[0] as string]: [texts[1], { nested: texts[2] }] },
          }),
        ],
        { retentionDays: 90 },
      );
    });
    const written = await Promise.all(appends);
    expect(written.flat()).toHaveLength(40);
    const { events } = await store.query('ten_fuzz', { pageSize: 100 });
    expect(events).toHaveLength(40);
    for (const event of events) {
      const i = Number(event.execution_id?.slice('exe_'.length));
      const [identifier, runId, message, code] = originals[i] as string[];
      expect(unescapeAuditText(event.identifier as string)).toBe(identifier);
      expect(unescapeAuditText(event.agent_run_id as string)).toBe(runId);
      expect(unescapeAuditText(event.error?.message as string)).toBe(message);
      expect(unescapeAuditText(event.code as string)).toBe(code);
      // What is stored never holds what PostgreSQL refuses.
      for (const stored of [event.identifier, event.agent_run_id, event.error?.message, event.code]) {
        expect(stored?.includes('\u0000')).toBe(false);
        expect(stored?.isWellFormed()).toBe(true);
      }
    }
    expect((await verifyChain(t.db.kysely, 'ten_fuzz')).ok).toBe(true);
  });

  it('never lets one append that the database refuses fail another: the bad record is kept in a minimal form', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    // An integer column out of range is refused by PostgreSQL whatever the escaping.
    const poisoned = store.append(
      'ten_poison',
      [record(new Date(), { execution_id: 'exe_bad', duration_ms: 2 ** 40, identifier: 'mallory' })],
      { retentionDays: 90 },
    );
    const victims = Array.from({ length: 20 }, (_, i) =>
      store.append('ten_poison', [record(new Date(), { execution_id: `exe_ok_${i}` })], {
        retentionDays: 90,
      }),
    );
    const results = await Promise.all([poisoned, ...victims]);
    expect(results.every((events) => events.length === 1)).toBe(true);
    const { events } = await store.query('ten_poison', { pageSize: 100 });
    expect(events).toHaveLength(21);
    const kept = events.find((e) => e.execution_id === 'exe_bad');
    expect(kept).toMatchObject({
      error: { code: 'audit_record_rejected' },
      identifier: null,
      duration_ms: null,
    });
    expect(kept?.error?.message).toContain('SQLSTATE 22003');
    expect((await verifyChain(t.db.kysely, 'ten_poison')).ok).toBe(true);
  });

  it('never stamps a record earlier than the one before it in the chain', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const late = new Date(Date.now() + 60_000);
    await store.append('ten_order', [record(late)], { retentionDays: 90 });
    // A replica whose clock is behind appends next: its record takes its predecessor's time.
    const [behind] = await store.append('ten_order', [record(new Date(Date.now() - 30_000))], {
      retentionDays: 90,
    });
    expect(behind?.occurred_at).toBe(late.toISOString());
  });
});
