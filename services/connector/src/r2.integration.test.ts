import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_CF_PERMISSION_GROUPS, startFakeCloudflare, startFakeR2 } from '@warden/testing';
import type { FakeCloudflare, FakeR2 } from '@warden/testing';
import { executeOverHttp } from './test-support/http-execute.ts';
import type { ExecuteBody } from './test-support/http-execute.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startListeningTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { connectMcpClient } from './test-support/mcp-client.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

interface AccountAnswer {
  connected_account: { r2_access_key: { access_key_id: string; created_at: string } | null };
}

const BASE_PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read'];

/**
 * `r2` in cloudflare_execute end to end: the REST API and MCP over real HTTP, the real sandbox
 * pool, policy, budget and audit, and a fake R2 that checks every SigV4 signature with
 * @smithy/signature-v4 against the credentials Cloudflare derives from the vaulted token.
 */
describe('r2 in cloudflare_execute', () => {
  let cf: FakeCloudflare;
  let r2: FakeR2;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let accountId: string;
  let aliceAccount: string;
  let zoneOnlyToken: string;
  let writerToken: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    r2 = await startFakeR2({ state: cf.state });
    ({ t, base } = await startListeningTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_R2_ENDPOINT: r2.urlTemplate,
      // Room for two 10 MB transfers on the server and one per tenant (see "the R2 bytes held").
      R2_MAX_BYTES_IN_FLIGHT: String(24 * 1024 * 1024),
      R2_MAX_TENANT_BYTES_IN_FLIGHT: String(12 * 1024 * 1024),
      R2_BYTES_WAIT_MS: '500',
    }));
    ({ apiKey } = await t.createTenant('R2'));
    const alice = cf.state.createUser({ email: 'alice@example.com' });
    accountId = cf.state.createAccount({ name: 'Acme', members: [alice.id] }).id;
    r2.createBucket(accountId, 'media');
    r2.createBucket(accountId, 'records', 'eu');
    const writer = cf.state.createUserToken({
      userId: alice.id,
      permissions: [...BASE_PERMISSIONS, ...FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Write']!],
    });
    aliceAccount = await t.connect(apiKey, 'alice', writer.value);
    writerToken = writer.value;
    // The derived S3 secret is a credential too: no log line may carry it.
    t.secrets.add(createHash('sha256').update(writer.value).digest('hex'));
    const policy = await fetch(`${base}/api/v1/identities/alice-read/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ read_only: true }),
    });
    expect(policy.status).toBe(200);
    await t.connect(apiKey, 'alice-read', writer.value);
    await t.connect(apiKey, 'alice-explain', writer.value);
    const zoneOnly = cf.state.createUserToken({
      userId: alice.id,
      permissions: [...BASE_PERMISSIONS, '#zone:read'],
    });
    await t.connect(apiKey, 'alice-no-r2', zoneOnly.value);
    zoneOnlyToken = zoneOnly.value;
  });
  afterAll(async () => {
    await t?.close();
    await r2?.close();
    await cf?.close();
  });

  async function execute(code: string, identifier = 'alice', key = apiKey): Promise<ExecuteBody> {
    return (await executeOverHttp({ base, apiKey: key, identifier }, code, { expectStatus: 200 })).body;
  }

  async function r2Events(executionId: string): Promise<AuditEventView[]> {
    // Outcomes are written after the result; the trail is complete once the call returned.
    const res = await fetch(`${base}/api/v1/audit/events?execution_id=${executionId}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(res.status).toBe(200);
    const { events } = (await res.json()) as { events: AuditEventView[] };
    return events.filter((e) => e.kind === 'upstream_request' && e.action.startsWith('r2.'));
  }

  it('puts, lists, heads, gets (text, JSON, base64, a range) and deletes, every request signed and audited', async () => {
    r2.clearRequests();
    const res = await execute(`async () => {
      const put = [
        await r2.put({ bucket: 'media', key: 'notes/hello.txt', body: 'hello, R2' }),
        await r2.put({ bucket: 'media', key: 'notes/data.json', body: { n: 1, tags: ['a'] }, as: 'json' }),
        await r2.put({ bucket: 'media', key: 'img/pixel.bin', body: 'AAEC/w==', as: 'base64', contentType: 'image/x-test' }),
      ];
      const top = await r2.list({ bucket: 'media', delimiter: '/' });
      const notes = await r2.list({ bucket: 'media', prefix: 'notes/', limit: 1 });
      const more = await r2.list({ bucket: 'media', prefix: 'notes/', cursor: notes.cursor });
      const head = await r2.head({ bucket: 'media', key: 'img/pixel.bin' });
      const text = await r2.get({ bucket: 'media', key: 'notes/hello.txt' });
      const json = await r2.get({ bucket: 'media', key: 'notes/data.json', as: 'json' });
      const b64 = await r2.get({ bucket: 'media', key: 'img/pixel.bin', as: 'base64' });
      const range = await r2.get({ bucket: 'media', key: 'notes/hello.txt', range: { offset: 7, length: 2 } });
      const deleted = await r2.delete({ bucket: 'media', key: 'notes/hello.txt' });
      const gone = [await r2.head({ bucket: 'media', key: 'notes/hello.txt' }), await r2.get({ bucket: 'media', key: 'notes/hello.txt' })];
      return { put, top, notes, more, head, text, json, b64, range, deleted, gone };
    }`);
    expect(res.error).toBeUndefined();
    const data = res.data as Record<string, unknown> & { more: { objects: Array<{ key: string }> } };
    expect(data.put).toEqual([
      { key: 'notes/hello.txt', size: 9, etag: expect.any(String) },
      { key: 'notes/data.json', size: 20, etag: expect.any(String) },
      { key: 'img/pixel.bin', size: 4, etag: expect.any(String) },
    ]);
    expect(data.top).toEqual({ objects: [], delimitedPrefixes: ['img/', 'notes/'], truncated: false });
    expect(data.notes).toEqual({
      objects: [{ key: 'notes/data.json', size: 20, etag: expect.any(String), uploaded: expect.any(String) }],
      delimitedPrefixes: [],
      truncated: true,
      cursor: expect.any(String),
    });
    expect(data.more.objects.map((o) => o.key)).toEqual(['notes/hello.txt']);
    expect(data.head).toEqual({
      key: 'img/pixel.bin',
      size: 4,
      etag: expect.any(String),
      uploaded: expect.any(String),
      contentType: 'image/x-test',
    });
    expect(data.text).toMatchObject({
      key: 'notes/hello.txt',
      size: 9,
      body: 'hello, R2',
      contentType: 'text/plain; charset=utf-8',
    });
    expect(data.json).toMatchObject({ body: { n: 1, tags: ['a'] }, contentType: 'application/json' });
    expect(data.b64).toMatchObject({ body: 'AAEC/w==', size: 4 });
    expect(data.range).toMatchObject({ body: 'R2', size: 9, range: { offset: 7, length: 2 } });
    expect(data.deleted).toEqual({ key: 'notes/hello.txt', deleted: true });
    expect(data.gone).toEqual([null, null]);
    expect(r2.getObject(accountId, 'media', 'img/pixel.bin')?.body).toEqual(Buffer.from([0, 1, 2, 255]));

    // Every request reached the fake with a signature it verified (no 400/403 among them).
    const requests = r2.requests();
    expect(requests).toHaveLength(14);
    expect(requests.filter((r) => r.error !== null && r.error !== 'NoSuchKey')).toEqual([]);
    expect(new Set(requests.map((r) => r.accessKeyId)).size).toBe(1);

    // …and each has its intent and its outcome in the trail.
    const events = await r2Events(res.execution_id);
    const intents = events.filter((e) => e.outcome === 'pending');
    const outcomes = events.filter((e) => e.outcome !== 'pending');
    expect(intents).toHaveLength(14);
    expect(outcomes).toHaveLength(14);
    expect(
      outcomes.map((e) => `${e.action} ${e.upstream?.method} ${e.upstream?.path} ${e.upstream?.status}`),
    ).toEqual(
      expect.arrayContaining([
        `r2.put PUT r2://account:${accountId}/media/notes/hello.txt 200`,
        `r2.list GET r2://account:${accountId}/media 200`,
        `r2.head HEAD r2://account:${accountId}/media/img/pixel.bin 200`,
        `r2.get GET r2://account:${accountId}/media/notes/hello.txt 206`,
        `r2.delete DELETE r2://account:${accountId}/media/notes/hello.txt 204`,
        `r2.get GET r2://account:${accountId}/media/notes/hello.txt 404`,
      ]),
    );
    expect(outcomes.every((e) => e.intent_id)).toBe(true);
  });

  it('uses the jurisdiction endpoint asked for, and names a bucket that does not exist', async () => {
    const res = await execute(`async () => {
      await r2.put({ bucket: 'records', key: 'r.txt', body: 'eu', jurisdiction: 'eu' });
      const eu = (await r2.get({ bucket: 'records', key: 'r.txt', jurisdiction: 'eu' })).body;
      let missing;
      try { await r2.get({ bucket: 'records', key: 'r.txt' }); } catch (e) { missing = e.code + ': ' + e.message; }
      return { eu, missing };
    }`);
    expect(res.data).toEqual({
      eu: 'eu',
      missing: expect.stringMatching(
        /^not_found: r2\.get: no such bucket "records" in account \w+ \(jurisdiction default; a bucket made in the EU/,
      ),
    });
    expect(r2.getObject(accountId, 'records', 'r.txt', 'eu')?.body.toString()).toBe('eu');
  });

  it('refuses a 12 MB object both ways, naming the limit', async () => {
    r2.putObject(accountId, 'media', 'big.bin', Buffer.alloc(12 * 1024 * 1024, 7));
    r2.clearRequests();
    const res = await execute(`async () => {
      const out = [];
      try { await r2.get({ bucket: 'media', key: 'big.bin', as: 'base64' }); } catch (e) { out.push(e.code + ': ' + e.message); }
      try { await r2.put({ bucket: 'media', key: 'big2.bin', body: 'x'.repeat(12 * 1024 * 1024) }); } catch (e) { out.push(e.code + ': ' + e.message); }
      const tail = await r2.get({ bucket: 'media', key: 'big.bin', range: { suffix: 3 }, as: 'base64' });
      // A range of the whole limit is read (the margin read around it for redaction is not counted).
      const most = await r2.get({ bucket: 'media', key: 'big.bin', range: { offset: 1, length: 10 * 1024 * 1024 }, as: 'base64' });
      return { out, tail: tail.body, size: tail.size, most: most.range };
    }`);
    expect(res.data).toEqual({
      out: [
        expect.stringMatching(
          /^payload_too_large: r2\.get: the object is 12582912 bytes, over the R2 size limit of 10485760 bytes \(R2_MAX_OBJECT_BYTES\)/,
        ),
        'payload_too_large: r2.put: the body is 12582912 bytes, over the R2 size limit of 10485760 bytes (R2_MAX_OBJECT_BYTES)',
      ],
      tail: Buffer.from([7, 7, 7]).toString('base64'),
      size: 12 * 1024 * 1024,
      most: { offset: 1, length: 10 * 1024 * 1024 },
    });
    // The put never left Warden; the refused get was sent and its answer dropped.
    expect(r2.requests().map((r) => r.method)).toEqual(['GET', 'GET', 'GET']);
    expect(r2.getObject(accountId, 'media', 'big2.bin')).toBeUndefined();
    const outcomes = (await r2Events(res.execution_id)).filter((e) => e.outcome !== 'pending');
    expect(outcomes.map((e) => [e.action, e.error?.code ?? null])).toEqual(
      expect.arrayContaining([
        ['r2.get', 'payload_too_large'],
        ['r2.put', 'payload_too_large'],
        ['r2.get', null],
      ]),
    );
  });

  it('says what to do when an object within the R2 limit is over the result limit', async () => {
    // 9 MB: under R2_MAX_OBJECT_BYTES (10 MB), over the 8 MiB execution result limit.
    r2.putObject(accountId, 'media', 'nine.txt', 'x'.repeat(9 * 1024 * 1024));
    const whole = await execute(`async () => (await r2.get({ bucket: 'media', key: 'nine.txt' })).body`);
    expect(whole.data).toBeNull();
    expect(whole.error).toEqual({
      code: 'result_too_large',
      message: expect.stringMatching(
        /^the result is 9437186 characters of JSON, over the execution result limit of 8388608; .*r2\.get range/,
      ),
    });
    // The object itself could be read and worked on in the sandbox, or returned in parts.
    const parts = await execute(`async () => {
      const all = await r2.get({ bucket: 'media', key: 'nine.txt' });
      const part = await r2.get({ bucket: 'media', key: 'nine.txt', range: { offset: 0, length: 4 * 1024 * 1024 } });
      return { size: all.body.length, part: part.body.length, range: part.range };
    }`);
    expect(parts.data).toEqual({
      size: 9 * 1024 * 1024,
      part: 4 * 1024 * 1024,
      range: { offset: 0, length: 4 * 1024 * 1024 },
    });
  });

  it('lets a read-only identity get but not put or delete; policy refusals are on the trail', async () => {
    r2.putObject(accountId, 'media', 'shared.txt', 'read me');
    r2.clearRequests();
    const res = await execute(
      `async () => {
        const got = (await r2.get({ bucket: 'media', key: 'shared.txt' })).body;
        const refused = [];
        for (const call of [() => r2.put({ bucket: 'media', key: 'shared.txt', body: 'overwritten' }), () => r2.delete({ bucket: 'media', key: 'shared.txt' })]) {
          try { await call(); } catch (e) { refused.push(e.code + ': ' + e.message); }
        }
        return { got, refused };
      }`,
      'alice-read',
    );
    expect(res.data).toEqual({
      got: 'read me',
      refused: [
        expect.stringMatching(/^policy_denied: .*PUT r2:\/\/account:\w+\/media\/shared\.txt.*read_only/),
        expect.stringMatching(/^policy_denied: .*DELETE r2:\/\/account:\w+\/media\/shared\.txt.*read_only/),
      ],
    });
    expect(r2.requests().map((r) => r.method)).toEqual(['GET']);
    expect(r2.getObject(accountId, 'media', 'shared.txt')?.body.toString()).toBe('read me');
    const outcomes = (await r2Events(res.execution_id)).filter((e) => e.outcome !== 'pending');
    expect(outcomes.map((e) => [e.upstream?.method, e.outcome])).toEqual(
      expect.arrayContaining([
        ['GET', 'success'],
        ['PUT', 'refused'],
        ['DELETE', 'refused'],
      ]),
    );
  });

  it('explains policy on r2:// paths as enforcement decides them', async () => {
    const put = await fetch(`${base}/api/v1/identities/alice-explain/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        rules: [{ effect: 'deny', methods: ['DELETE'], path: 'r2://backups/**', name: 'keep-backups' }],
      }),
    });
    expect(put.status).toBe(200);
    const explain = async (identifier: string, method: string, path: string) => {
      const res = await fetch(`${base}/api/v1/policy/evaluate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ identifier, method, path }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await explain('alice-explain', 'DELETE', 'r2://backups/db/2026 12.sql')).toEqual({
      status: 200,
      body: expect.objectContaining({
        allowed: false,
        path: 'r2://backups/db/2026%2012.sql',
        scope: 'identity',
        rule: expect.stringContaining('keep-backups'),
      }),
    });
    expect((await explain('alice-explain', 'GET', 'r2://backups/db/2026%2012.sql')).body).toMatchObject({
      allowed: true,
      path: 'r2://backups/db/2026%2012.sql',
    });
    expect((await explain('alice-read', 'PUT', 'r2://media')).body).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('read_only'),
    });
    const bad = await explain('alice-explain', 'GET', 'r2://Not_A_Bucket/k');
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('not an R2 bucket name');

    // The same rule refuses the same object in an execution.
    const run = await execute(
      `async () => { try { await r2.delete({ bucket: 'backups', key: 'db/2026 12.sql' }); } catch (e) { return e.code; } }`,
      'alice-explain',
    );
    expect(run.data).toBe('policy_denied');
  });

  describe("a tenant's deny rules on R2 keys", () => {
    let guardedKey: string;
    const CAFE = 'caf\u00e9'; // NFC: precomposed é
    const CAFE_NFD = 'cafe\u0301'; // the same name, decomposed

    beforeAll(async () => {
      ({ apiKey: guardedKey } = await t.createTenant('R2 guarded'));
      const gus = cf.state.createUser({ email: 'gus@example.com' });
      cf.state.addMember(accountId, gus.id);
      const writer = cf.state.createUserToken({
        userId: gus.id,
        permissions: [...BASE_PERMISSIONS, ...FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Write']!],
      });
      t.secrets.add(createHash('sha256').update(writer.value).digest('hex'));
      await t.connect(guardedKey, 'gus', writer.value);
      const policy = await fetch(`${base}/api/v1/policy`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${guardedKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          rules: [
            { effect: 'deny', methods: ['*'], path: 'r2://media/secret/**', name: 'no-secrets' },
            { effect: 'deny', methods: ['*'], path: 'r2://media/caf%C3%A9/**', name: 'no-cafe' },
          ],
        }),
      });
      expect(policy.status).toBe(200);
      r2.putObject(accountId, 'media', 'secret/plan.txt', 'the plan');
      r2.putObject(accountId, 'media', `${CAFE}/menu.txt`, 'the menu');
      r2.putObject(accountId, 'media', 'open/readme.txt', 'hello');
    });

    it('refuses a key spelled in another Unicode normalization form, and sends the key it checked', async () => {
      r2.clearRequests();
      const res = await execute(
        `async () => {
          const out = [];
          for (const call of [
            () => r2.get({ bucket: 'media', key: '${CAFE_NFD}/menu.txt' }),
            () => r2.head({ bucket: 'media', key: '${CAFE_NFD}/menu.txt' }),
            () => r2.put({ bucket: 'media', key: '${CAFE_NFD}/menu.txt', body: 'overwritten' }),
            () => r2.delete({ bucket: 'media', key: '${CAFE_NFD}/menu.txt' }),
          ]) {
            try { out.push(await call()); } catch (e) { out.push(e.code + ': ' + e.message); }
          }
          const written = await r2.put({ bucket: 'media', key: 'open/${CAFE_NFD}.txt', body: 'fine' });
          return { out, written };
        }`,
        'gus',
        guardedKey,
      );
      expect(res.error).toBeUndefined();
      const { out, written } = res.data as { out: string[]; written: { key: string } };
      expect(out).toEqual([
        expect.stringMatching(
          /^policy_denied: GET r2:\/\/account:\w+\/media\/caf%C3%A9\/menu\.txt refused: .*no-cafe/,
        ),
        expect.stringMatching(
          /^policy_denied: HEAD r2:\/\/account:\w+\/media\/caf%C3%A9\/menu\.txt refused: .*no-cafe/,
        ),
        expect.stringMatching(
          /^policy_denied: PUT r2:\/\/account:\w+\/media\/caf%C3%A9\/menu\.txt refused: .*no-cafe/,
        ),
        expect.stringMatching(
          /^policy_denied: DELETE r2:\/\/account:\w+\/media\/caf%C3%A9\/menu\.txt refused: .*no-cafe/,
        ),
      ]);
      expect(r2.getObject(accountId, 'media', `${CAFE}/menu.txt`)?.body.toString()).toBe('the menu');
      // What was allowed went out in the NFC spelling policy checked.
      expect(written.key).toBe(`open/${CAFE}.txt`);
      expect(r2.requests().map((r) => `${r.method} ${decodeURIComponent(r.path)}`)).toEqual([
        `PUT /media/open/${CAFE}.txt`,
      ]);
    });

    it('refuses a rule whose key is not in NFC, naming the spelling to write', async () => {
      const res = await fetch(`${base}/api/v1/policy`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${guardedKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          rules: [{ effect: 'deny', methods: ['*'], path: 'r2://media/cafe%CC%81/**' }],
        }),
      });
      expect(res.status).toBe(400);
      expect(JSON.stringify(await res.json())).toContain('write it as \\"caf%C3%A9\\"');
    });

    it('refuses a listing inside a denied path and withholds denied keys from any other listing', async () => {
      r2.clearRequests();
      const res = await execute(
        `async () => {
          const refused = [];
          for (const prefix of ['secret/', 'secret/sub/x', '${CAFE_NFD}/']) {
            try { await r2.list({ bucket: 'media', prefix }); } catch (e) { refused.push(e.code + ': ' + e.message); }
          }
          const all = await r2.list({ bucket: 'media' });
          const top = await r2.list({ bucket: 'media', delimiter: '/' });
          const partial = await r2.list({ bucket: 'media', prefix: 'sec' });
          return { refused, all, top, partial };
        }`,
        'gus',
        guardedKey,
      );
      expect(res.error).toBeUndefined();
      const data = res.data as {
        refused: string[];
        all: { objects: Array<{ key: string }>; withheld?: number };
        top: { delimitedPrefixes: string[]; withheld?: number };
        partial: { objects: unknown[]; withheld?: number };
      };
      expect(data.refused).toEqual([
        expect.stringMatching(
          /^policy_denied: r2\.list: prefix "secret\/" .*r2:\/\/account:\w+\/media\/secret,.*no-secrets/,
        ),
        expect.stringMatching(
          /^policy_denied: r2\.list: prefix "secret\/sub\/x" .*r2:\/\/account:\w+\/media\/secret\/sub,.*no-secrets/,
        ),
        expect.stringMatching(new RegExp(`^policy_denied: r2\\.list: prefix "${CAFE}/" .*no-cafe`)),
      ]);
      const keys = data.all.objects.map((o) => o.key);
      expect(keys).toContain('open/readme.txt');
      expect(keys.filter((k) => k.startsWith('secret/') || k.normalize('NFC').startsWith(CAFE))).toEqual([]);
      expect(data.all.withheld).toBeGreaterThanOrEqual(2);
      expect(data.top.delimitedPrefixes).toContain('open/');
      expect(data.top.delimitedPrefixes).not.toContain('secret/');
      expect(data.top.delimitedPrefixes).not.toContain(`${CAFE}/`);
      expect(data.partial).toMatchObject({ objects: [], withheld: 1 });
      // Refused listings never reached R2.
      expect(r2.requests().map((r) => r.query)).not.toContainEqual(expect.stringContaining('prefix=secret'));
    });
  });

  it('bounds the R2 bytes held at once per tenant, without starving another tenant', async () => {
    const NINE = 9.5 * 1024 * 1024;
    r2.putObject(accountId, 'media', 'held.bin', Buffer.alloc(NINE, 1));
    r2.putObject(accountId, 'media', 'other.bin', Buffer.alloc(NINE, 2));
    const { apiKey: neighbourKey } = await t.createTenant('R2 neighbour');
    const nell = cf.state.createUser({ email: 'nell@example.com' });
    cf.state.addMember(accountId, nell.id);
    const token = cf.state.createUserToken({
      userId: nell.id,
      permissions: [...BASE_PERMISSIONS, ...FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Read']!],
    });
    t.secrets.add(createHash('sha256').update(token.value).digest('hex'));
    await t.connect(neighbourKey, 'nell', token.value);
    // A small read first: the R2 budget has a recent answer, so the big one is not its lone probe.
    const size = `async () => {
      await r2.head({ bucket: 'media', key: 'held.bin' });
      return (await r2.get({ bucket: 'media', key: 'held.bin', as: 'base64' })).size;
    }`;

    // One 9.5 MB get of this tenant is held open mid-body: it holds 9.5 of its 12 MB.
    const pause = r2.pauseBodies('media', 'held.bin');
    try {
      const first = execute(size);
      await expect.poll(() => pause.stalled(), { timeout: 10_000 }).toBe(1);
      // A second one of the same tenant finds no room within R2_BYTES_WAIT_MS and says what to do.
      const second = await execute(size);
      expect(second.data).toBeNull();
      expect(second.error).toEqual({
        code: 'rate_limited',
        message: expect.stringMatching(
          /^r2\.get: 9961472 more bytes did not fit within 500 ms: this tenant's R2 transfers already hold 9961472 of 12582912 bytes \(R2_MAX_TENANT_BYTES_IN_FLIGHT\); run fewer r2 calls at once/,
        ),
      });
      // Another tenant still reads an object as large meanwhile.
      const neighbour = await execute(
        `async () => (await r2.get({ bucket: 'media', key: 'other.bin', as: 'base64' })).size`,
        'nell',
        neighbourKey,
      );
      expect(neighbour).toMatchObject({ data: NINE });
      pause.release();
      expect(await first).toMatchObject({ data: NINE });
      // Released: the tenant reads again, and the refusal is on the trail.
      expect(await execute(size)).toMatchObject({ data: NINE });
      const refused = (await r2Events(second.execution_id)).filter(
        (e) => e.outcome !== 'pending' && e.action === 'r2.get',
      );
      expect(refused.map((e) => e.error?.code)).toEqual(['rate_limited']);
    } finally {
      pause.release();
    }
  });

  it('keeps the token and its derived R2 secret out of object bodies, also split across ranges', async () => {
    const derived = createHash('sha256').update(writerToken).digest();
    const forms = [
      writerToken,
      derived.toString('hex'),
      derived.toString('hex').toUpperCase(),
      derived.toString('base64'),
    ];
    // Each secret form between filler, at known offsets.
    const filler = 'x'.repeat(100);
    const text = filler + forms.join(filler) + filler;
    r2.putObject(accountId, 'media', 'leaky.txt', text);
    const at = forms.map((form) => text.indexOf(form));
    const res = await execute(`async () => {
      const get = (range) => r2.get({ bucket: 'media', key: 'leaky.txt', ...(range ? { range } : {}) });
      const whole = (await get()).body;
      const split = [];
      for (const [start, length] of ${JSON.stringify(at.map((a, i) => [a, forms[i]!.length]))}) {
        const half = Math.floor(length / 2);
        const first = await get({ offset: 0, length: start + half });
        const second = await get({ offset: start + half, length: 110 });
        split.push([first.body, second.body, second.range]);
      }
      const inside = (await get({ offset: ${at[1]! + 5}, length: 10 })).body;
      const suffix = (await get({ suffix: ${text.length - at[3]! - 6} })).body;
      let outside;
      try { await get({ offset: ${text.length + 5}, length: 2 }); } catch (e) { outside = e.code + ': ' + e.message; }
      return { whole, split, inside, suffix, outside };
    }`);
    expect(res.error).toBeUndefined();
    const data = res.data as {
      whole: string;
      split: Array<[string, string, { offset: number; length: number }]>;
      inside: string;
      suffix: string;
      outside: string;
    };
    const halves = forms.flatMap((form) => [
      form.slice(0, Math.floor(form.length / 2)),
      form.slice(Math.floor(form.length / 2)),
    ]);
    const everything = JSON.stringify(data);
    for (const piece of halves) expect(everything).not.toContain(piece);
    expect(data.whole).toBe(filler + forms.map(() => '[REDACTED]').join(filler) + filler);
    for (const [i, [first, second, range]] of data.split.entries()) {
      expect(first.endsWith(`${filler}[REDACTED]`)).toBe(true);
      expect(second.startsWith('[REDACTED]x')).toBe(true);
      // The range reported is the one asked for, not the margin read around it.
      expect(range).toEqual({ offset: at[i]! + Math.floor(forms[i]!.length / 2), length: 110 });
    }
    expect(data.inside).toBe('[REDACTED]');
    expect(data.suffix).toBe(`[REDACTED]${filler}`);
    expect(data.outside).toMatch(/^invalid_request: r2\.get: the range is outside the object/);
  });

  it("tells two accounts' buckets of the same name apart, in rules, the tester and the trail", async () => {
    // A user in two accounts, each with a bucket named media.
    const ada = cf.state.createUser({ email: 'ada@example.com' });
    cf.state.addMember(accountId, ada.id);
    const other = cf.state.createAccount({ name: 'Other', members: [ada.id] }).id;
    r2.createBucket(other, 'media');
    const token = cf.state.createUserToken({
      userId: ada.id,
      permissions: [...BASE_PERMISSIONS, ...FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Write']!],
    });
    t.secrets.add(createHash('sha256').update(token.value).digest('hex'));
    const rule = {
      effect: 'deny',
      methods: ['PUT'],
      path: `r2://account:${other}/media/**`,
      name: 'other-media',
    };
    const put = await fetch(`${base}/api/v1/identities/ada-accounts/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rules: [rule] }),
    });
    expect(put.status).toBe(200);
    await t.connect(apiKey, 'ada-accounts', token.value);
    const call = await fetch(`${base}/api/v1/execute_tool`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        tool_name: 'cloudflare_execute',
        identifier: 'ada-accounts',
        params: {
          account_id: accountId,
          code: `async () => {
        const ok = await r2.put({ bucket: 'media', key: 'acct.txt', body: 'a', accountId: '${accountId}' });
        let refused;
        try { await r2.put({ bucket: 'media', key: 'acct.txt', body: 'b', accountId: '${other.toUpperCase()}' }); } catch (e) { refused = e.code + ': ' + e.message; }
        return { ok: ok.key, refused };
      }`,
        },
      }),
    });
    expect(call.status).toBe(200);
    const res = (await call.json()) as ExecuteBody;
    expect(res.data).toEqual({
      ok: 'acct.txt',
      refused: `policy_denied: PUT r2://account:${other}/media/acct.txt refused: denied by identity rule other-media`,
    });
    expect(r2.getObject(other, 'media', 'acct.txt')).toBeUndefined();
    const trail = (await r2Events(res.execution_id)).filter((e) => e.outcome !== 'pending');
    expect(trail.map((e) => [e.upstream?.path, e.upstream?.path_template, e.outcome])).toEqual(
      expect.arrayContaining([
        [`r2://account:${accountId}/media/acct.txt`, 'r2://account:{account_id}/{bucket}/{key}', 'success'],
        [`r2://account:${other}/media/acct.txt`, 'r2://account:{account_id}/{bucket}/{key}', 'refused'],
      ]),
    );
    const explain = async (path: string) => {
      const answer = await fetch(`${base}/api/v1/policy/evaluate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ identifier: 'ada-accounts', method: 'PUT', path }),
      });
      return { status: answer.status, body: (await answer.json()) as Record<string, unknown> };
    };
    expect((await explain(`r2://account:${other}/media/x`)).body).toMatchObject({
      allowed: false,
      path: `r2://account:${other}/media/x`,
    });
    expect((await explain(`r2://account:${accountId}/media/x`)).body).toMatchObject({ allowed: true });
    expect((await explain('r2://account:nope/media/x')).status).toBe(400);
    const bad = await fetch(`${base}/api/v1/identities/ada-accounts/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rules: [{ ...rule, path: 'r2://account:Acme/media/**' }] }),
    });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain(
      '32 lower-case hex characters of a Cloudflare account id',
    );
  });

  it('tells an EU bucket from a default one of the same name, in rules, the tester and the trail', async () => {
    r2.createBucket(accountId, 'ledger');
    r2.createBucket(accountId, 'ledger', 'eu');
    const rule = {
      effect: 'deny',
      methods: ['PUT'],
      path: `r2://account:${accountId}/jurisdiction:eu/ledger/**`,
      name: 'eu-ledger',
    };
    const put = await fetch(`${base}/api/v1/identities/ada-eu/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rules: [rule] }),
    });
    expect(put.status).toBe(200);
    await t.connect(apiKey, 'ada-eu', writerToken);
    const res = await execute(
      `async () => {
        const ok = await r2.put({ bucket: 'ledger', key: 'x.txt', body: 'default' });
        let refused;
        try { await r2.put({ bucket: 'ledger', key: 'x.txt', body: 'eu', jurisdiction: 'eu' }); } catch (e) { refused = e.code + ': ' + e.message; }
        return { ok: ok.key, refused };
      }`,
      'ada-eu',
    );
    const eu = `r2://account:${accountId}/jurisdiction:eu/ledger/x.txt`;
    expect(res.data).toEqual({
      ok: 'x.txt',
      refused: `policy_denied: PUT ${eu} refused: denied by identity rule eu-ledger`,
    });
    expect(r2.getObject(accountId, 'ledger', 'x.txt')?.body.toString()).toBe('default');
    expect(r2.getObject(accountId, 'ledger', 'x.txt', 'eu')).toBeUndefined();
    const trail = (await r2Events(res.execution_id)).filter((e) => e.outcome !== 'pending');
    expect(trail.map((e) => [e.upstream?.path, e.upstream?.path_template, e.outcome])).toEqual([
      [`r2://account:${accountId}/ledger/x.txt`, 'r2://account:{account_id}/{bucket}/{key}', 'success'],
      [eu, 'r2://account:{account_id}/jurisdiction:{jurisdiction}/{bucket}/{key}', 'refused'],
    ]);
    const explain = async (path: string) => {
      const answer = await fetch(`${base}/api/v1/policy/evaluate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ identifier: 'ada-eu', method: 'PUT', path }),
      });
      return { status: answer.status, body: (await answer.json()) as Record<string, unknown> };
    };
    expect((await explain(eu)).body).toMatchObject({ allowed: false, path: eu, rule: 'eu-ledger' });
    expect((await explain(`r2://account:${accountId}/jurisdiction:default/ledger/x.txt`)).body).toMatchObject(
      { allowed: true, path: `r2://account:${accountId}/ledger/x.txt` },
    );
    expect((await explain(`r2://account:${accountId}/jurisdiction:mars/ledger/x.txt`)).status).toBe(400);
    // A name without the segment is a default-jurisdiction object, as the trail names it.
    const defaults = await fetch(`${base}/api/v1/identities/ada-eu/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        rules: [{ ...rule, path: 'r2://jurisdiction:default/ledger/**', name: 'default-ledger' }],
      }),
    });
    expect(defaults.status).toBe(200);
    expect((await explain(`r2://account:${accountId}/ledger/x.txt`)).body).toMatchObject({
      allowed: false,
      rule: 'default-ledger',
    });
    expect((await explain(eu)).body).toMatchObject({ allowed: true });
    const bad = await fetch(`${base}/api/v1/identities/ada-eu/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rules: [{ ...rule, path: 'r2://jurisdiction:EU/ledger/**' }] }),
    });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain('jurisdiction:<default|eu|fedramp>');
  });

  it("shows the principal's R2 budget beside the API's", async () => {
    const budget = async () => {
      const res = await fetch(`${base}/api/v1/connected_accounts/${aliceAccount}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      expect(res.status).toBe(200);
      type View = { remaining: number; capacity: number; window_seconds: number };
      return (
        (await res.json()) as { connected_account: { rate_budget: View & { graphql: View; r2: View } } }
      ).connected_account.rate_budget;
    };
    const before = await budget();
    expect(before.r2).toMatchObject({ capacity: 1200, window_seconds: 300 });
    const res = await execute(`async () => {
      await r2.head({ bucket: 'media', key: 'nothing-here' });
      await r2.list({ bucket: 'media', limit: 1 });
    }`);
    expect(res.error).toBeUndefined();
    const after = await budget();
    expect(before.r2.remaining - after.r2.remaining).toBe(2);
    expect(after.remaining).toBe(before.remaining);
  });

  it('names the R2 permission a token lacks', async () => {
    const res = await execute(
      `async () => { try { await r2.list({ bucket: 'media' }); } catch (e) { return e.code + ': ' + e.message; } }`,
      'alice-no-r2',
    );
    expect(res.data).toMatch(
      /^forbidden: r2\.list: R2 refused GET r2:\/\/account:\w+\/media \(AccessDenied\): the token needs the Workers R2 Storage Read permission/,
    );
  });

  describe('an R2 access key pair vaulted on the connected account', () => {
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${apiKey}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, text, json: text ? (JSON.parse(text) as AccountAnswer) : null };
    };
    const r2Rows = (id: string) =>
      t.db.db.kysely
        .selectFrom('r2_access_keys')
        .selectAll()
        .where('connected_account_id', '=', id)
        .execute();

    it('signs with the pair in preference to the token, never shows its secret, and goes back to the token without it', async () => {
      // The token has no R2 permission: only the vaulted pair can reach R2.
      const id = await t.connect(apiKey, 'alice-key', zoneOnlyToken);
      const key = r2.createAccessKey(accountId, 'write');
      t.secrets.add(key.secretAccessKey);

      const bad = await call('PUT', `/api/v1/connected_accounts/${id}/r2_access_key`, {
        access_key_id: 'short',
        secret_access_key: key.secretAccessKey,
      });
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('access_key_id');
      expect(bad.text).not.toContain(key.secretAccessKey);

      const set = await call('PUT', `/api/v1/connected_accounts/${id}/r2_access_key`, {
        access_key_id: key.accessKeyId,
        secret_access_key: key.secretAccessKey,
      });
      expect(set.status).toBe(200);
      expect(set.json!.connected_account.r2_access_key).toEqual({
        access_key_id: key.accessKeyId,
        created_at: expect.any(String),
      });
      expect(set.text).not.toContain(key.secretAccessKey);
      const shown = await call('GET', `/api/v1/connected_accounts/${id}`);
      expect(shown.json!.connected_account.r2_access_key?.access_key_id).toBe(key.accessKeyId);
      expect(shown.text).not.toContain(key.secretAccessKey);
      // Sealed: the secret is in no column in clear.
      const [row] = await r2Rows(id);
      expect(Buffer.from(row!.ciphertext).toString('latin1')).not.toContain(key.secretAccessKey);

      r2.clearRequests();
      const res = await execute(
        `async () => {
          await r2.put({ bucket: 'media', key: 'keyed.txt', body: 'signed by the pair', contentType: 'text/x-keyed' });
          return (await r2.get({ bucket: 'media', key: 'keyed.txt', range: { offset: 7, length: 2 } })).body;
        }`,
        'alice-key',
      );
      expect(res.error).toBeUndefined();
      expect(res.data).toBe('by');
      expect(r2.requests().map((r) => [r.method, r.status, r.accessKeyId])).toEqual([
        ['PUT', 200, key.accessKeyId],
        ['GET', 206, key.accessKeyId],
      ]);
      const trail = await call('GET', `/api/v1/audit/events?identifier=alice-key&page_size=100`);
      expect(trail.text).not.toContain(key.secretAccessKey);
      expect(trail.text).toContain('"r2_access_key":"added"');

      const removed = await call('DELETE', `/api/v1/connected_accounts/${id}/r2_access_key`);
      expect(removed.status).toBe(200);
      expect(removed.json!.connected_account.r2_access_key).toBeNull();
      expect(await r2Rows(id)).toEqual([]);
      const after = await execute(
        `async () => { try { await r2.list({ bucket: 'media' }); } catch (e) { return e.code + ': ' + e.message; } }`,
        'alice-key',
      );
      expect(after.data).toMatch(/^forbidden: .*Workers R2 Storage Read/);
    });

    it('names the permission a read-only pair lacks, and is refused on another tenant', async () => {
      const id = await t.connect(apiKey, 'alice-key-read', zoneOnlyToken);
      const key = r2.createAccessKey(accountId, 'read');
      t.secrets.add(key.secretAccessKey);
      expect(
        (
          await call('PUT', `/api/v1/connected_accounts/${id}/r2_access_key`, {
            access_key_id: key.accessKeyId,
            secret_access_key: key.secretAccessKey,
          })
        ).status,
      ).toBe(200);
      const res = await execute(
        `async () => {
          const got = await r2.head({ bucket: 'media', key: 'keyed.txt' });
          try { await r2.put({ bucket: 'media', key: 'nope.txt', body: 'x' }); } catch (e) { return [got.size, e.code + ': ' + e.message]; }
        }`,
        'alice-key-read',
      );
      expect(res.data).toEqual([
        18,
        expect.stringMatching(/^forbidden: .*R2 access key.*Object Read & Write/),
      ]);

      // A pair stored with the wrong secret is refused by R2 and reported as the pair's fault.
      const wrong = 'f'.repeat(64);
      t.secrets.add(wrong);
      expect(
        (
          await call('PUT', `/api/v1/connected_accounts/${id}/r2_access_key`, {
            access_key_id: key.accessKeyId,
            secret_access_key: wrong,
          })
        ).status,
      ).toBe(200);
      const refused = await execute(
        `async () => { try { await r2.get({ bucket: 'media', key: 'keyed.txt' }); } catch (e) { return e.code + ': ' + e.message; } }`,
        'alice-key-read',
      );
      expect(refused.data).toMatch(
        /^forbidden: .*\(SignatureDoesNotMatch\) with the R2 access key.*wrong or no longer valid/,
      );
      expect(r2.requests().at(-1)).toMatchObject({ method: 'GET', error: 'SignatureDoesNotMatch' });

      const other = await t.createTenant('R2 other');
      const foreign = await fetch(`${base}/api/v1/connected_accounts/${id}/r2_access_key`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${other.apiKey}` },
      });
      expect(foreign.status).toBe(404);
      expect(await r2Rows(id)).toHaveLength(1);
    });

    it('is deleted with the account, on revocation and on offboarding', async () => {
      const key = r2.createAccessKey(accountId, 'read');
      t.secrets.add(key.secretAccessKey);
      const pair = { access_key_id: key.accessKeyId, secret_access_key: key.secretAccessKey };
      const revoked = await t.connect(apiKey, 'alice-key-revoked', zoneOnlyToken);
      const offboarded = await t.connect(apiKey, 'alice-key-offboarded', zoneOnlyToken);
      for (const id of [revoked, offboarded]) {
        expect((await call('PUT', `/api/v1/connected_accounts/${id}/r2_access_key`, pair)).status).toBe(200);
      }
      expect((await call('DELETE', `/api/v1/connected_accounts/${revoked}`)).status).toBe(204);
      expect(await r2Rows(revoked)).toEqual([]);
      const off = await call('POST', `/api/v1/identities/alice-key-offboarded/offboard`, {});
      expect(off.status).toBe(200);
      expect(await r2Rows(offboarded)).toEqual([]);
      expect((await call('PUT', `/api/v1/connected_accounts/${revoked}/r2_access_key`, pair)).status).toBe(
        409,
      );
    });
  });

  it('works over MCP, and cloudflare_search describes r2', async () => {
    const client = await connectMcpClient({
      base,
      apiKey,
      identifier: 'alice',
      name: 'r2-test',
      secrets: t.secrets,
    });
    try {
      const search = await client.callTool({
        name: 'cloudflare_search',
        arguments: { code: 'async () => [spec.r2.summary, Object.keys(spec.r2.methods).length]' },
      });
      const [summary, methods] = JSON.parse((search.content as Array<{ text: string }>)[0]!.text) as [
        string,
        number,
      ];
      expect(summary).toContain('r2://bucket/key');
      expect(methods).toBe(5);
      const run = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => {
            await r2.put({ bucket: 'media', key: 'mcp.json', body: { via: 'mcp' }, as: 'json' });
            return (await r2.get({ bucket: 'media', key: 'mcp.json', as: 'json' })).body;
          }`,
        },
      });
      expect(run.isError).toBeFalsy();
      expect(JSON.parse((run.content as Array<{ text: string }>)[0]!.text)).toEqual({ via: 'mcp' });
      expect(r2.getObject(accountId, 'media', 'mcp.json')?.body.toString()).toBe('{"via":"mcp"}');
    } finally {
      await client.close();
    }
  });
});
