// Code passed to page.evaluate runs in the browser.
/// <reference lib="dom" />
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureConsoleBuilt } from '../../../console/scripts/console-build.ts';
import { openConsoleBrowser } from '../test-support/console-browser.ts';
import type { ConsoleBrowser } from '../test-support/console-browser.ts';
import { freePort } from '../test-support/free-port.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startListeningTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/**
 * attack29: stored XSS through every text a tenant or an agent controls that the console shows
 * (tenant name, identifiers, agent run ids, agent code, error messages, policy rule names, sink
 * names, approval plans), in Debian's Chromium. Markup must stay text: no element the payload
 * names may exist, nothing may run, the CSP reports nothing.
 */
const MARK = 'xss29';
const PAYLOAD = `<img src=x id=${MARK} onerror="window.__${MARK}=1"><b class=${MARK}>b</b><script>window.__${MARK}=2</script>`;
const SVG = `"><svg class=${MARK} onload="window.__${MARK}=3">`;

describe('attack29: hostile text in the console (browser)', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let ui: ConsoleBrowser;
  let page: Page;
  let acme: { tenantId: string; apiKey: string };
  const identifier = `eve${SVG}@acme.com`;
  const cspViolations: string[] = [];
  const dialogs: string[] = [];

  async function call(method: string, url: string, body?: unknown, key = acme.apiKey) {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : null, text };
  }

  async function injected(where: string): Promise<string[]> {
    const found = await page.evaluate((mark) => {
      const w = window as unknown as Record<string, unknown>;
      const out: string[] = [];
      if (w[`__${mark}`] !== undefined) out.push(`window.__${mark}=${String(w[`__${mark}`])}`);
      for (const el of Array.from(
        document.querySelectorAll(`#${mark}, .${mark}, [onerror], [onload], script:not([src])`),
      )) {
        out.push(el.outerHTML.slice(0, 120));
      }
      return out;
    }, MARK);
    return found.map((f) => `${where}: ${f}`);
  }

  beforeAll(async () => {
    await ensureConsoleBuilt();
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    ({ t, base } = await startListeningTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      DELIVERY_ALLOW_INSECURE: 'true',
      OUTBOX_INTERVAL_MS: '200',
    }));
    acme = await t.createTenant(`Acme ${PAYLOAD}`);

    const user = cf.state.createUser({ email: 'eve@acme.com' });
    const account = cf.state.createAccount({ name: `Eve ${PAYLOAD}`, members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'eve.example' }).id;
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read', '#dns_records:edit'],
    }).value;
    await t.connect(acme.apiKey, identifier, token);

    // The agent: a run id, code, a thrown error and a log line of its choosing.
    for (const code of [
      `async () => { console.log(${JSON.stringify(PAYLOAD)}); return ${JSON.stringify(PAYLOAD)} }`,
      `async () => { throw new Error(${JSON.stringify(PAYLOAD)}) }`,
      `async () => cloudflare.request({ method: 'GET', path: '/zones/${SVG}/dns_records' })`,
    ]) {
      const run = await call('POST', '/api/v1/execute_tool', {
        tool_name: 'cloudflare_execute',
        identifier,
        agent_run_id: `run${SVG}`.slice(0, 200),
        params: { code },
      });
      expect(run.status, run.text).toBeLessThan(500);
    }
    // A rule name, an approval whose plan carries the payload, a sink named with it.
    const policy = await call('PUT', `/api/v1/identities/${encodeURIComponent(identifier)}/policy`, {
      rules: [{ effect: 'approve', methods: ['POST'], path: '/zones/*/dns_records', name: `rule ${SVG}` }],
    });
    expect(policy.status, policy.text).toBe(200);
    const tenantPolicy = await call('PUT', '/api/v1/policy', {
      rules: [{ effect: 'deny', methods: ['DELETE'], path: '/zones/**', name: `t ${SVG}` }],
    });
    expect(tenantPolicy.status, tenantPolicy.text).toBe(200);
    const planned = await call('POST', '/api/v1/execute_tool', {
      tool_name: 'cloudflare_execute',
      identifier,
      params: {
        code: `async () => cloudflare.dns.records.create({ zone_id: '${zone}', type: 'TXT', name: ${JSON.stringify(`x.eve.example`)}, content: ${JSON.stringify(PAYLOAD)}, comment: ${JSON.stringify(SVG)} })`,
      },
    });
    expect(planned.status, planned.text).toBe(200);
    expect(planned.text).toContain('apr_');
    const receiver = await freePort();
    const sink = await call('POST', '/api/v1/audit/sinks', {
      name: `sink ${SVG}`.slice(0, 100),
      config: {
        type: 'webhook',
        url: `http://127.0.0.1:${receiver}/${encodeURIComponent(PAYLOAD)}`,
        secret: 'a'.repeat(32),
      },
    });
    expect(sink.status, sink.text).toBe(201);
    const mcp = await call('POST', '/api/v1/mcp/tokens', { identifier, expiry: '3600s' });
    expect(mcp.status, mcp.text).toBe(201);
    t.secrets.add((mcp.body as { token: string }).token);

    ui = await openConsoleBrowser(base);
    page = ui.page;
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
  });

  afterAll(async () => {
    await ui?.close();
    await t?.close();
    await cf?.close();
  });

  it('HELD: every tenant page shows the hostile text as text; nothing runs, no element is injected', async () => {
    await page.goto(`${base}/console`);
    await page.getByLabel('Tenant API key').fill(acme.apiKey);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await expect
      .poll(() => page.getByText(`Tenant: Acme ${PAYLOAD}`, { exact: false }).count())
      .toBeGreaterThan(0);
    const problems: string[] = [...(await injected('overview'))];
    const seenText: Record<string, boolean> = {};
    for (const [path, heading] of [
      ['/identities', 'Identities'],
      ['/audit', 'Audit explorer'],
      ['/approvals', 'Approvals'],
      ['/mcp', 'MCP'],
      ['/policy', 'Policy'],
      ['/sinks', 'SIEM sinks'],
      ['/sso', 'Single sign-on'],
      ['/', 'Overview'],
    ] as const) {
      await page.goto(`${base}/console${path}`);
      await page.getByRole('heading', { level: 1, name: heading }).waitFor();
      await page.waitForTimeout(1200);
      const text = await page.evaluate(() => document.body.innerText);
      seenText[path] = text.includes(SVG) || text.includes(PAYLOAD);
      problems.push(...(await injected(path)));
      if (path === '/audit') {
        // Open every event of the first screen in the drawer.
        const buttons = page.locator('tr[data-row] button.link');
        const n = Math.min(await buttons.count(), 12);
        for (let i = 0; i < n; i++) {
          await buttons.nth(i).click();
          await page.waitForTimeout(250);
          problems.push(...(await injected(`/audit drawer ${i}`)));
        }
      }
    }
    expect(seenText['/identities']).toBe(true);
    expect(seenText['/approvals']).toBe(true);
    expect(problems).toEqual([]);
    expect(dialogs).toEqual([]);
    expect(cspViolations).toEqual([]);
  });

  it('HELD: the operator pages show a hostile tenant name as text', async () => {
    const context = await ui.browser.newContext();
    const op = await context.newPage();
    op.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    try {
      await op.goto(`${base}/console`);
      await op.getByRole('radio', { name: 'Operator' }).check();
      await op.getByLabel('Admin token').fill(t.adminToken);
      await op.getByRole('button', { name: 'Sign in', exact: true }).click();
      await op.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor();
      await expect.poll(() => op.evaluate(() => document.body.innerText)).toContain(`Acme ${PAYLOAD}`);
      const found = await op.evaluate((mark) => {
        const out: string[] = [];
        if ((window as unknown as Record<string, unknown>)[`__${mark}`] !== undefined) out.push('ran');
        for (const el of Array.from(document.querySelectorAll(`#${mark}, .${mark}, [onerror], [onload]`)))
          out.push(el.outerHTML);
        return out;
      }, MARK);
      expect(found).toEqual([]);
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
