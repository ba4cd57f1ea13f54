// Code passed to page.evaluate runs in the browser.
/// <reference lib="dom" />
import { readFileSync } from 'node:fs';
import { startFakeCloudflare } from '@warden/testing';
import { sql } from 'kysely';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureConsoleBuilt } from '../../../console/scripts/console-build.ts';
import { startTestIdp } from '../oauth/test-support/test-idp.ts';
import type { TestIdp } from '../oauth/test-support/test-idp.ts';
import { openConsoleBrowser } from '../test-support/console-browser.ts';
import type { ConsoleBrowser } from '../test-support/console-browser.ts';
import { freePort } from '../test-support/free-port.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

const ALICE = 'alice@acme.com';
/** Acme's console admin at its identity provider, and an engineer who is not one. */
const DANA = { email: 'dana@acme.com', password: 'dana-password' };
const EVE = { email: 'eve@acme.com', password: 'eve-password' };
const SEEDED_EVENTS = 100_000;
/** Fills the `audit_events` of a tenant with `n` tool calls and upstream requests in one statement. */
async function seedEvents(t: TestApp, tenantId: string, n: number): Promise<void> {
  const db = t.container.db.kysely;
  const head = await db
    .selectFrom('audit_chain_heads')
    .select('seq')
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  const from = Number(head?.seq ?? 0) + 1;
  await sql`
    insert into audit_events (id, tenant_id, seq, occurred_at, expires_on, kind, action, outcome,
      execution_id, identifier, caller_type, caller_id, tool_name, upstream_method, upstream_path,
      upstream_status, duration_ms, prev_hash, hash)
    select 'aud_seed' || lpad(g::text, 12, '0'), ${tenantId}, g,
      now() - ((${from + n}::int - g) * interval '2 seconds'), current_date + 90,
      case when g % 4 = 0 then 'tool_call' else 'upstream_request' end,
      case when g % 4 = 0 then 'tool_call' else 'cloudflare.request' end,
      case when g % 50 = 0 then 'error' when g % 4 = 1 then 'pending' else 'success' end,
      'exe_seed' || (g / 4), 'engineer' || (g % 25) || '@perf.example', 'api_key', 'key_seed',
      case when g % 4 = 0 then 'cloudflare_execute' else null end,
      case when g % 4 = 0 then null else 'GET' end,
      case when g % 4 = 0 then null else '/zones/' || (g % 97) || '/dns_records' end,
      case when g % 4 in (0, 1) then null else 200 end, g % 300, repeat('0', 64), repeat('0', 64)
    from generate_series(${from}::int, ${from + n - 1}::int) g`.execute(db);
  // As autovacuum would after such a load: the planner's statistics know the rows are there.
  await sql`analyze audit_events`.execute(db);
  await db
    .updateTable('audit_chain_heads')
    .set({ seq: from + n - 1 })
    .where('tenant_id', '=', tenantId)
    .execute();
}

describe('admin console in a real browser', () => {
  let t: TestApp;
  let cf: Awaited<ReturnType<typeof startFakeCloudflare>>;
  let idp: TestIdp;
  let base: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let acme: { tenantId: string; apiKey: string };
  let perf: { tenantId: string; apiKey: string };
  let aliceToken: string;
  let rotatedToken: string;
  let zoneId: string;
  let executionId: string;
  let mcpToken: string;
  let ui: ConsoleBrowser;

  async function openPage(label: string, heading: string): Promise<void> {
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: label }).click();
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  }

  async function executeAsAlice(code: string): Promise<{ execution_id: string; data: unknown }> {
    const res = await fetch(`${base}/api/v1/execute_tool`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        tool_name: 'cloudflare_execute',
        identifier: ALICE,
        params: { code },
        agent_run_id: 'run-console-e2e',
      }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { execution_id: string; data: unknown };
  }

  async function mcpListStatus(token: string): Promise<number> {
    const res = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    await res.body?.cancel();
    return res.status;
  }

  beforeAll(async () => {
    await ensureConsoleBuilt();
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      PUBLIC_URL: base,
      OUTBOX_INTERVAL_MS: '200',
      DELIVERY_ALLOW_INSECURE: 'true',
      // The test identity provider is plain http on loopback.
      OAUTH_ALLOW_INSECURE: 'true',
      // Acme's domain routes at once; the DNS proof has its own tests (oauth-sso-domain-proof).
      SSO_DOMAIN_PROOF: 'none',
    });
    await t.app.listen({ host: '127.0.0.1', port });
    acme = await t.createTenant('Acme');
    idp = await startTestIdp({ redirectUri: `${base}/oauth/sso/callback`, users: [DANA, EVE] });
    t.secrets.add(idp.clientSecret);
    t.secrets.add(DANA.password);
    t.secrets.add(EVE.password);
    const sso = await fetch(`${base}/api/v1/mcp/sso`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${acme.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        issuer: idp.issuer,
        client_id: idp.clientId,
        client_secret: idp.clientSecret,
        allowed_email_domains: ['acme.com'],
        console_admins: [DANA.email],
      }),
    });
    expect(sso.status, await sso.text()).toBe(200);
    perf = await t.createTenant('Perf');
    await seedEvents(t, perf.tenantId, SEEDED_EVENTS);

    const user = cf.state.createUser({ email: ALICE });
    const account = cf.state.createAccount({ name: 'Acme Production', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'acme.example' }).id;
    const permissions = [
      'com.cloudflare.api.user.read',
      '#zone:read',
      '#dns_records:read',
      '#dns_records:edit',
    ];
    aliceToken = cf.state.createUserToken({ userId: user.id, permissions }).value;
    rotatedToken = cf.state.createUserToken({ userId: user.id, permissions }).value;
    t.secrets.add(aliceToken);
    t.secrets.add(rotatedToken);

    ui = await openConsoleBrowser(base);
    ({ browser, context, page } = ui);
  });

  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await idp?.close();
    await cf?.close();
  });

  it('signs a tenant admin in with an API key: an httpOnly SameSite=Strict cookie, nothing in storage, a strict CSP', async () => {
    const response = await page.goto(`${base}/console`);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    await page.getByRole('heading', { name: 'Sign in to Warden' }).waitFor();
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await ui.shot('sign-in');

    await page.getByLabel('Tenant API key').fill('wdn_sk_not-a-key');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect.poll(() => page.getByRole('alert').innerText()).toContain('unknown or revoked');

    await page.getByLabel('Tenant API key').fill(acme.apiKey);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await expect.poll(() => page.getByText('Tenant: Acme').count()).toBe(1);

    const cookies = await context.cookies(base);
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({
      name: 'warden_console',
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
    });
    expect(cookies[0]!.value).not.toContain(acme.apiKey);
    const storage = await page.evaluate(() => [
      JSON.stringify({ ...localStorage }),
      JSON.stringify({ ...sessionStorage }),
      document.cookie,
    ]);
    expect(storage).toEqual(['{}', '{}', '']);

    // The cookie alone changes nothing: every change needs the session's anti-forgery token.
    const forged = await page.evaluate(async () => {
      const res = await fetch('/api/v1/policy', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ read_only: true }),
      });
      return { status: res.status, body: (await res.json()) as { error: { field?: string } } };
    });
    expect(forged.status).toBe(403);
    expect(forged.body.error.field).toBe('x-csrf-token');
  });

  it('signs a tenant admin in through the tenant’s SSO; someone it does not name is refused with a clear message', async () => {
    /** "Sign in with SSO" in a fresh browser, through the identity provider's own pages. */
    async function ssoSignIn(user: { email: string; password: string }) {
      const ssoContext = await browser.newContext();
      const ssoPage = await ssoContext.newPage();
      await ssoPage.goto(`${base}/console`);
      await ssoPage.getByLabel('Work email').fill(user.email);
      await ssoPage.getByRole('button', { name: 'Sign in with SSO' }).click();
      await ssoPage.locator('input[name=login]').fill(user.email);
      await ssoPage.locator('input[name=password]').fill(user.password);
      await ssoPage.getByRole('button', { name: 'Sign-in' }).click();
      await ssoPage.getByRole('button', { name: 'Continue' }).click();
      return { ssoContext, ssoPage };
    }

    const refused = await ssoSignIn(EVE);
    await expect
      .poll(() => refused.ssoPage.getByRole('alert').innerText())
      .toContain('not one of its console admins');
    expect(new URL(refused.ssoPage.url()).search).toBe('');
    // (The identity provider's own cookies share the host: only Warden's console cookie counts.)
    expect((await refused.ssoContext.cookies(base)).filter((c) => c.name === 'warden_console')).toEqual([]);
    expect(await ui.accessibilityProblems(refused.ssoPage)).toEqual([]);
    await refused.ssoContext.close();

    const { ssoContext, ssoPage } = await ssoSignIn(DANA);
    await ssoPage.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await expect.poll(() => ssoPage.getByText(`Tenant: Acme (${DANA.email})`).count()).toBe(1);
    const cookies = (await ssoContext.cookies(base)).filter((c) => c.name === 'warden_console');
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    await ssoPage.getByRole('button', { name: 'Sign out' }).click();
    await ssoPage.getByRole('heading', { name: 'Sign in to Warden' }).waitFor();
    await ssoContext.close();
  });

  it('connects an account from the Identities page, with its Cloudflare account and budget', async () => {
    await openPage('Identities', 'Identities');
    await page.getByLabel('Identifier').fill(ALICE);
    await page.getByLabel('Cloudflare API token').fill(aliceToken);
    await page.getByRole('button', { name: 'Verify and connect' }).click();
    const identity = page.getByRole('region', { name: `Identity ${ALICE}` });
    await identity.waitFor();
    await expect.poll(() => identity.innerText()).toContain('ACTIVE');
    expect(await identity.innerText()).toContain('Acme Production');
    expect(await identity.getByRole('meter').count()).toBe(1);

    // Rotating goes through Cloudflare's verification too.
    await identity.getByRole('button', { name: 'Rotate' }).click();
    await page.getByLabel('New Cloudflare API token').fill(rotatedToken);
    await page.getByRole('dialog').getByRole('button', { name: 'Rotate' }).click();
    await page.getByText('Credential rotated.').waitFor();
  });

  it('finds an execution run through the API in the audit explorer, with its code and upstream requests', async () => {
    const code = `async () => {
      const zones = await cloudflare.request({ method: 'GET', path: '/zones' });
      const records = await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}/dns_records' });
      return { zones: zones.result.length, records: records.result.length };
    }`;
    const run = await executeAsAlice(code);
    executionId = run.execution_id;
    expect(run.data).toEqual({ zones: 1, records: 0 });
    for (let i = 0; i < 4; i++) {
      await executeAsAlice(
        "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.length",
      );
    }
    await executeAsAlice("async () => { throw new Error('the agent gave up') }");

    await openPage('Overview', 'Overview');
    await expect.poll(() => page.locator('figcaption').innerText()).toContain('6 calls, 1 errors');
    await page.getByRole('region', { name: 'Top identities (24 h)' }).getByText(ALICE).waitFor();
    await ui.shot('overview');

    await openPage('Audit explorer', 'Audit explorer');
    await page.getByLabel('Identity').fill(ALICE);
    await page.getByLabel('Tool').selectOption('cloudflare_execute');
    await page.getByLabel('Kind').selectOption('tool_call');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.locator('.count').innerText()).toBe('6 events');
    // Newest first: the execution with the code above is the sixth from the top.
    await page.locator('tr[data-row="5"] button.link').click();
    const drawer = page.getByRole('complementary');
    await drawer.getByText(executionId).waitFor();
    expect(await drawer.getByLabel('Agent code').innerText()).toContain('dns_records');
    const upstream = drawer.getByRole('list', { name: 'Upstream requests' });
    await expect.poll(() => upstream.getByRole('listitem').count()).toBe(2);
    const requests = await upstream.innerText();
    expect(requests).toContain('GET /zones');
    expect(requests).toContain(`GET /zones/${zoneId}/dns_records`);
    expect(requests).toContain('HTTP 200');
    expect(requests).toContain('intent aud_');
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await ui.shot('audit-explorer');
    await drawer.getByRole('button', { name: 'Close' }).click();

    // Filtering by outcome includes the write-ahead intents (`pending`).
    await page.getByLabel('Kind').selectOption('upstream_request');
    await page.getByLabel('Tool').selectOption('');
    await page.getByLabel('Outcome').selectOption('pending');
    await page.getByRole('button', { name: 'Apply' }).click();
    // The intents of the agent's six requests at least (verifications write intents too), once
    // the filtered page has replaced the previous one (its count shows until the reload starts).
    const filtered = async () => {
      const count = await page.locator('.count').innerText();
      const outcomes = await page.locator('tbody tr[data-row] .pill').allInnerTexts();
      return { count: /^\d+ events$/.test(count) ? Number(count.split(' ')[0]) : null, outcomes };
    };
    await expect
      .poll(async () => {
        const { count, outcomes } = await filtered();
        return count !== null && count >= 6 && outcomes.length >= 6 && outcomes.every((o) => o === 'pending');
      })
      .toBe(true);
    expect(new Set((await filtered()).outcomes)).toEqual(new Set(['pending']));

    await page.getByRole('button', { name: 'Verify chain' }).click();
    await expect
      .poll(() => page.getByTestId('verify-result').innerText())
      .toMatch(/^Chain intact: \d+ records checked/);
  });

  it('exports the trail as NDJSON from the explorer', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'NDJSON' }).click(),
    ]);
    expect(download.suggestedFilename()).toMatch(/^warden-audit-\d{4}-\d{2}-\d{2}\.ndjson$/);
    const lines = readFileSync((await download.path())!, 'utf8')
      .trim()
      .split('\n');
    const events = lines.map((line) => JSON.parse(line) as { execution_id: string | null; kind: string });
    expect(events.filter((e) => e.execution_id === executionId).map((e) => e.kind)).toEqual([
      'upstream_request',
      'upstream_request',
      'upstream_request',
      'upstream_request',
      'tool_call',
    ]);
  });

  it('mints an MCP token and copies a working Cursor config', async () => {
    await openPage('MCP', 'MCP');
    await page.getByRole('form', { name: 'Mint a token' }).getByLabel('Identifier').fill(ALICE);
    await page.getByRole('button', { name: 'Mint' }).click();
    await page.getByRole('heading', { name: 'Client configuration' }).waitFor();
    await page.getByRole('button', { name: 'Copy Cursor config' }).click();
    await page.getByRole('button', { name: 'Copied' }).waitFor();
    const copied = JSON.parse(await page.evaluate(() => navigator.clipboard.readText())) as {
      mcpServers: { cloudflare: { url: string; headers: { Authorization: string } } };
    };
    expect(copied.mcpServers.cloudflare.url).toBe(`${base}/mcp`);
    mcpToken = copied.mcpServers.cloudflare.headers.Authorization.replace(/^Bearer /, '');
    t.secrets.add(mcpToken);
    expect(await mcpListStatus(mcpToken)).toBe(200);
    expect(await page.locator('pre').nth(1).innerText()).toContain(
      `claude mcp add --transport http cloudflare ${base}/mcp`,
    );
    await expect.poll(() => page.getByRole('region', { name: 'Tokens' }).getByText('active').count()).toBe(1);
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await ui.shot('mcp');
  });

  it("changes a policy and sees the tester's answer change, naming the deciding rule", async () => {
    await openPage('Policy', 'Policy');
    const tester = page.getByRole('region', { name: 'Policy tester' });
    const ask = async () => {
      await tester.getByLabel('Identity').fill(ALICE);
      await tester.getByLabel('Method').selectOption('POST');
      await tester.getByLabel('Path').fill(`/zones/${zoneId}/dns_records`);
      await tester.getByRole('button', { name: 'Would it be allowed?' }).click();
    };
    await ask();
    await expect.poll(() => page.getByTestId('tester-answer').innerText()).toContain('Allowed');

    const add = page.getByRole('form', { name: 'Add a rule' });
    await add.getByLabel('Effect').selectOption('deny');
    await add.getByLabel('Methods').fill('POST,PUT,PATCH,DELETE');
    await add.getByLabel('Path pattern').fill('/zones/*/dns_records/**');
    await add.getByLabel('Rule name').fill('no-dns-writes');
    await add.getByRole('button', { name: 'Add rule' }).click();
    await page.getByRole('button', { name: 'Save policy' }).click();
    await page.getByText('Tenant policy saved.').waitFor();

    await ask();
    await expect.poll(() => page.getByTestId('tester-answer').innerText()).toContain('Refused');
    const answer = await page.getByTestId('tester-answer').innerText();
    expect(answer).toContain('denied by tenant rule no-dns-writes');
    expect(answer).toContain('Deciding rule: no-dns-writes (tenant policy)');
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await ui.shot('policy');

    // The same rule applies to a real execution.
    const refused = (await executeAsAlice(
      `async () => (await cloudflare.request({ method: 'POST', path: '/zones/${zoneId}/dns_records', body: { type: 'A', name: 'x', content: '192.0.2.1' } })).success`,
    )) as { error?: { code: string } };
    expect(refused.error?.code).toBe('policy_denied');
  });

  it('offboards an identity with a typed confirmation and its MCP sessions end', async () => {
    await openPage('Identities', 'Identities');
    await page
      .getByRole('region', { name: `Identity ${ALICE}` })
      .getByRole('button', { name: 'Offboard' })
      .click();
    const dialog = page.getByRole('dialog');
    const confirm = dialog.getByRole('button', { name: 'Offboard' });
    expect(await confirm.isDisabled()).toBe(true);
    await dialog.getByLabel(/Type .* to confirm/).fill('alice@acme.co');
    expect(await confirm.isDisabled()).toBe(true);
    await dialog.getByLabel(/Type .* to confirm/).fill(ALICE);
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await confirm.click();
    await page
      .getByText(`Offboarded ${ALICE}: 1 accounts and 1 MCP tokens revoked, sessions closed.`)
      .waitFor();
    await expect
      .poll(() => page.getByRole('region', { name: `Identity ${ALICE}` }).innerText())
      .toContain('REVOKED');
    await ui.shot('identities');

    expect(await mcpListStatus(mcpToken)).toBe(401);
    await openPage('MCP', 'MCP');
    const tokens = page.getByRole('region', { name: 'Tokens' });
    await tokens.getByLabel('Identifier').fill(ALICE);
    await tokens.getByRole('button', { name: 'List' }).click();
    await expect.poll(() => tokens.getByText('revoked').count()).toBe(1);
  });

  it('passes the accessibility scan on every tenant page', async () => {
    for (const [label, heading] of [
      ['Overview', 'Overview'],
      ['Identities', 'Identities'],
      ['Audit explorer', 'Audit explorer'],
      ['Approvals', 'Approvals'],
      ['MCP', 'MCP'],
      ['Single sign-on', 'Single sign-on'],
      ['Policy', 'Policy'],
      ['SIEM sinks', 'SIEM sinks'],
    ] as const) {
      await openPage(label, heading);
      await page.waitForLoadState('networkidle');
      expect(await ui.accessibilityProblems(page), label).toEqual([]);
    }
    await openPage('Approvals', 'Approvals');
    await page.getByText('Nothing waits for a decision.').waitFor();
  });

  it('decides a write approval from the inbox: the plan is shown, and approving sends it', async () => {
    const carol = 'carol@acme.com';
    const user = cf.state.createUser({ email: carol });
    const account = cf.state.createAccount({ name: 'Carol Co', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'carol.example' }).id;
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:edit'],
    }).value;
    t.secrets.add(token);
    await t.connect(acme.apiKey, carol, token);
    const call = (method: string, url: string, body?: unknown) =>
      fetch(`${base}${url}`, {
        method,
        headers: { authorization: `Bearer ${acme.apiKey}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    // The policy page's test left a tenant policy; this one starts from none.
    expect((await call('PUT', '/api/v1/policy', {})).status).toBe(200);
    const policy = await call('PUT', `/api/v1/identities/${encodeURIComponent(carol)}/policy`, {
      rules: [{ effect: 'approve', methods: ['POST'], path: '/zones/*/dns_records' }],
    });
    expect(policy.status).toBe(200);
    // The agent's side plans with a key of its own: the key the console signed in with decides
    // (the key that planned the writes may not approve them).
    const issued = await fetch(`${base}/admin/v1/tenants/${acme.tenantId}/api_keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminToken}` },
    });
    expect(issued.status).toBe(201);
    const agentKey = ((await issued.json()) as { api_key: string }).api_key;
    t.secrets.add(agentKey);
    const planned = await fetch(`${base}/api/v1/execute_tool`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        tool_name: 'cloudflare_execute',
        identifier: carol,
        params: {
          code: `async () => cloudflare.dns.records.create({ zone_id: '${zone}', type: 'TXT', name: 'inbox.carol.example', content: 'from the console' })`,
        },
      }),
    });
    const plannedBody = (await planned.json()) as { approval?: { id: string } };
    expect(plannedBody.approval, JSON.stringify(plannedBody)).toBeDefined();
    const approvalId = plannedBody.approval?.id ?? '';

    await openPage('Approvals', 'Approvals');
    // The inbox was open already (empty): a reload shows what is pending now.
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Approvals' }).waitFor();
    const card = page.getByRole('region', { name: `Approval ${approvalId}` });
    await card.getByText('inbox.carol.example', { exact: false }).waitFor();
    await card.getByLabel('Comment').fill('checked in the console');
    await card.getByRole('button', { name: 'Approve' }).click();
    await expect
      .poll(
        async () =>
          (
            (await (await call('GET', `/api/v1/approvals/${approvalId}`)).json()) as {
              approval: { status: string };
            }
          ).approval.status,
      )
      .toBe('applied');
    expect(
      cf.requests().filter((r) => r.method === 'POST' && r.path === `/zones/${zone}/dns_records`),
    ).toHaveLength(1);
    await page.getByText('Nothing waits for a decision.').waitFor();
    await ui.shot('approvals');
  });

  it('lists SIEM sink health and failed deliveries, and retries them', async () => {
    const receiver = await freePort();
    // A sink nobody listens on: every delivery fails until it is given up.
    const created = await fetch(`${base}/api/v1/audit/sinks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'Dead letter',
        config: { type: 'webhook', url: `http://127.0.0.1:${receiver}/hook`, secret: 'a'.repeat(32) },
      }),
    });
    expect(created.status, await created.clone().text()).toBe(201);
    const sink = ((await created.json()) as { sink: { id: string } }).sink;
    // Any committed record goes to the sink: a policy change is one.
    const changed = await fetch(`${base}/api/v1/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${acme.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ read_only: false }),
    });
    expect(changed.status).toBe(200);
    const outbox = () =>
      t.container.db.kysely
        .selectFrom('outbox')
        .select('status')
        .where('destination_id', '=', sink.id)
        .execute();
    await expect.poll(async () => (await outbox()).length).toBeGreaterThan(0);
    // Give the delivery up now rather than after its backoff schedule. An attempt in flight
    // settles after this and puts its rows back to pending (a slow machine lost this race):
    // give them up again until they stay failed.
    await expect
      .poll(
        async () => {
          await t.container.db.kysely
            .updateTable('outbox')
            .set({ status: 'failed', last_error: 'connect ECONNREFUSED (test)' })
            .where('destination_id', '=', sink.id)
            .execute();
          await new Promise((resolve) => setTimeout(resolve, 300));
          return (await outbox()).every((r) => r.status === 'failed');
        },
        { timeout: 20_000, interval: 100 },
      )
      .toBe(true);
    await openPage('SIEM sinks', 'SIEM sinks');
    const card = page.getByRole('region', { name: 'Sink Dead letter' });
    await expect.poll(() => card.innerText()).toContain('ECONNREFUSED');
    await card.getByRole('button', { name: 'Retry failed deliveries' }).click();
    await expect.poll(() => card.innerText()).toMatch(/[1-9]\d* deliveries queued again/);
    // Requeued with fresh attempts (the dispatcher may already be retrying them).
    expect((await outbox()).filter((r) => r.status === 'failed')).toEqual([]);
    expect(await ui.accessibilityProblems(page)).toEqual([]);
  });

  it('opens the audit explorer over 100,000 events in well under a second and scrolls through them', async () => {
    const perfContext = await browser.newContext({ viewport: { width: 1360, height: 860 } });
    const perfPage = await perfContext.newPage();
    try {
      await perfPage.goto(`${base}/console`);
      await perfPage.getByLabel('Tenant API key').fill(perf.apiKey);
      await perfPage.getByRole('button', { name: 'Sign in', exact: true }).click();
      await perfPage.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();

      // Timed in the page, checked on every animation frame: from the click to the first rows and
      // the count on screen (loading the page's code, the first window and the count of matches).
      await perfPage.evaluate(() => {
        (window as unknown as { started: number }).started = performance.now();
      });
      await perfPage
        .getByRole('navigation', { name: 'Console' })
        .getByRole('link', { name: 'Audit explorer' })
        .click();
      const openMs = Math.round(
        await perfPage
          .waitForFunction(
            () =>
              document.querySelector('tr[data-row="0"] button.link') &&
              /^[\d,]+ events$/.test(document.querySelector('.count')?.textContent ?? '') &&
              performance.now() - (window as unknown as { started: number }).started,
            undefined,
            { polling: 'raf' },
          )
          .then((handle) => handle.jsonValue() as Promise<number>),
      );
      const total = Number((await perfPage.locator('.count').innerText()).split(' ')[0]!.replaceAll(',', ''));
      expect(total).toBeGreaterThan(SEEDED_EVENTS);
      console.log(`console: the audit explorer opened over ${total} events in ${openMs} ms`);
      // Measured and reported; the bound only catches a broken explorer, not a slow machine.
      expect(openMs).toBeLessThan(15_000);

      // Rows exist for the whole range, fetched as they scroll into view.
      const rendered = await perfPage.locator('tbody tr[data-row]').count();
      expect(rendered).toBeLessThan(100);
      await perfPage.locator('.table-scroll').evaluate((el) => (el.scrollTop = el.scrollHeight / 2));
      // The rows in view move to the middle and their window is fetched.
      await perfPage.waitForFunction(() => {
        const first = document.querySelector('tbody tr[data-row]');
        return (
          Number(first?.getAttribute('data-row')) > 40_000 && first?.querySelector('button.link') !== null
        );
      });
      await perfPage.locator('.table-scroll').evaluate((el) => (el.scrollTop = el.scrollHeight));
      await perfPage.getByText('tenant.created').waitFor();
      expect(await ui.accessibilityProblems(perfPage)).toEqual([]);
    } finally {
      await perfContext.close();
    }
  });

  it('signs an operator in with the admin token: tenants, keys, spec and key rotation', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Warden' }).waitFor();
    expect(await context.cookies(base)).toEqual([]);

    await page.getByLabel('Operator').check();
    await page.getByLabel('Admin token').fill(t.adminToken);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor();
    const acmeCard = page.getByRole('region', { name: 'Tenant Acme' });
    await expect.poll(() => acmeCard.getByRole('row').count()).toBeGreaterThan(1);
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await ui.shot('operator-tenants');

    // A revoked key ends the sessions signed in with it.
    const tenantContext = await browser.newContext();
    const tenantPage = await tenantContext.newPage();
    await tenantPage.goto(`${base}/console`);
    await tenantPage.getByLabel('Tenant API key').fill(perf.apiKey);
    await tenantPage.getByRole('button', { name: 'Sign in', exact: true }).click();
    await tenantPage.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    const perfCard = page.getByRole('region', { name: 'Tenant Perf' });
    await perfCard.getByRole('button', { name: 'Revoke' }).click();
    await expect.poll(() => perfCard.getByText('revoked').count()).toBe(1);
    await tenantPage.reload();
    await tenantPage.getByRole('heading', { name: 'Sign in to Warden' }).waitFor();
    await tenantContext.close();

    await openPage('Spec and keys', 'Spec and keys');
    await expect.poll(() => page.getByText('loaded', { exact: true }).count()).toBe(1);
    await page.getByRole('button', { name: 'Reload spec' }).click();
    await page.getByText('The document is unchanged.').waitFor();
    await expect
      .poll(() => page.getByRole('region', { name: 'Key rotation' }).innerText())
      .toContain('current');
    expect(await ui.accessibilityProblems(page)).toEqual([]);
    await ui.shot('operator-platform');

    // An operator session is not a tenant key.
    const asTenant = await page.evaluate(async () => (await fetch('/api/v1/connected_accounts')).status);
    expect(asTenant).toBe(401);
    expect(ui.consoleErrors.filter((e) => /Content Security Policy/i.test(e))).toEqual([]);
  });
});
