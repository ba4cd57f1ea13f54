import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '@warden/audit';
import { startFakeCloudflare, startFakeR2 } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { r2User } from './test-support/r2-user.ts';
import { startTestApp } from './test-support/test-app.ts';

/**
 * Outsider attack on "a request whose caller went away before it was sent gives its budget place
 * back" (refuseIfCancelled). It found that the check looked at the signal once, before the R2
 * client signed the request (aws4fetch: several awaited crypto.subtle steps) and, often, opened a
 * connection: a call cancelled in that gap made fetch refuse the aborted signal, nothing reached
 * R2, yet the place stayed charged. The last look now comes once the request is signed
 * (`beforeSend`). What fetch aborts while the request waits for its connection stays charged:
 * fetch cannot tell it from one aborted after its bytes left.
 * A counting TCP proxy in front of fake R2 tells which requests reached the wire.
 */
describe('outsider attack: a caller going away at awkward moments (refuseIfCancelled)', () => {
  let cf: FakeCloudflare;
  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
  });
  afterAll(async () => {
    await cf?.close();
  });

  /** A TCP proxy in front of fake R2 that counts the R2 requests of `accountId` put on the wire. */
  async function wireCounter(target: string, accountId: string) {
    const url = new URL(target.replace('{account_id}', 'x').replace('{jurisdiction}', 'y'));
    const sockets = new Set<Socket>();
    let sent = 0;
    const line = new RegExp(`(?:^|\\r\\n)(?:GET|HEAD|PUT|DELETE|POST) /${accountId}/`, 'g');
    const server = createServer((client) => {
      const upstream = connect(Number(url.port), url.hostname);
      sockets.add(client).add(upstream);
      let text = '';
      let counted = 0;
      client.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        const now = text.match(line)?.length ?? 0;
        sent += now - counted;
        counted = now;
      });
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    return {
      urlTemplate: target.replace(`:${url.port}`, `:${port}`),
      sent: () => sent,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it('HELD (after the fix of the signing window this attack found): R2 requests abandoned at every moment: each on the wire is charged, each given back is free again, and the budget agrees with the trail', async () => {
    const r2 = await startFakeR2({ state: cf.state });
    const { account, token, list } = r2User(cf, r2, 'r2-race');
    const wire = await wireCounter(r2.urlTemplate, account.id);
    const TRIALS = 50;
    const BUDGET = TRIALS + 11;
    const t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_R2_ENDPOINT: wire.urlTemplate,
      CLOUDFLARE_R2_BUDGET: `${BUDGET}/300`,
    });
    try {
      const tenant = await t.createTenant('r2 cancel race');
      await t.connect(tenant.apiKey, 'r2-race', token.value);
      const run = (code: string) => t.execute(tenant.apiKey, 'r2-race', code);
      const warm = await run(`async () => (await ${list}).objects.length`);
      expect(warm.json()).toMatchObject({ data: 0 });
      expect(wire.sent()).toBe(1);

      // The code starts a list and returns a little later each time: the call is cancelled
      // before the intent is committed, while the budget is asked, while the request is signed
      // (aws4fetch's crypto.subtle steps, after refuseIfCancelled looked), or once it was sent.
      for (let k = 0; k < TRIALS; k++) {
        const res = await run(
          `async () => { ${list}.catch(() => {}); let x = 0; for (let i = 0; i < ${k * 100_000}; i++) x += i; return 'gone'; }`,
        );
        expect(res.json()).toMatchObject({ data: 'gone' });
      }
      await delay(1_000);
      const db = t.db.db.kysely;
      const outcomes = await db
        .selectFrom('audit_events')
        .select(['error_message'])
        .where('tenant_id', '=', tenant.tenantId)
        .where('action', '=', 'r2.list')
        .where('outcome', '!=', 'pending')
        .execute();
      expect(outcomes).toHaveLength(TRIALS + 1);
      const chain = await verifyChain(db, tenant.tenantId);
      expect(chain).toMatchObject({ ok: true, intents_without_outcome: [] });
      const released = outcomes.filter(
        (o) => o.error_message === 'r2.list was cancelled before it was sent',
      ).length;
      const cancelledByClient = outcomes.filter(
        (o) => o.error_message === 'r2.list: the request to R2 was cancelled',
      ).length;
      const answered = outcomes.filter((o) => o.error_message === null).length - 1;
      const sent = wire.sent() - 1;
      // The places the trials kept (the rest were given back, or refused before admission): they
      // should be the requests that reached the wire.
      const charged = answered + cancelledByClient;
      expect(released + charged).toBeLessThanOrEqual(TRIALS);

      // What is left of the R2 budget: every place not charged by a request on the wire.
      // (in executions of at most 40 requests, under the per-execution request limit).
      let left = 0;
      let refusal: string | null = null;
      while (refusal === null && left <= BUDGET) {
        const after = await run(`async () => {
          let n = 0;
          for (let i = 0; i < 40; i++) {
            try { await ${list}; n++; } catch (e) { return [n, e.code]; }
          }
          return [n, null];
        }`);
        const [n, code] = after.json().data as [number, string | null];
        left += n;
        refusal = code;
      }
      expect(refusal).toBe('rate_limited');
      console.log(
        `r2 cancel race: ${released} given back before sending, ${answered} answered, ${cancelledByClient} aborted by fetch (${sent - answered} of them on the wire), ${left} places left`,
      );
      // The cancellation before sending was taken (once signed, the last look gives the place back).
      expect(released).toBeGreaterThan(0);
      // Every request on the wire is charged: a cancellation never frees a place Cloudflare used.
      expect(charged).toBeGreaterThanOrEqual(sent);
      // The budget agrees with the trail: the places given back are free again, the charged ones held.
      expect(left).toBe(BUDGET - 1 - charged);
      // Left open (see the README): fetch aborted while the request waited for its connection
      // (queued behind one in flight, or connecting) sent nothing, yet fetch cannot tell that case
      // from one aborted after its bytes left, so it is charged: charged - sent such places.
    } finally {
      await t.close();
      await wire.close();
      await r2.close();
    }
  }, 120_000);
});
