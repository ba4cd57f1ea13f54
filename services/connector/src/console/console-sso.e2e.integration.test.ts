// Code passed to page.evaluate runs in the browser.
/// <reference lib="dom" />
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureConsoleBuilt } from '../../../console/scripts/console-build.ts';
import { startTestDns } from '../oauth/test-support/test-dns.ts';
import type { TestDns } from '../oauth/test-support/test-dns.ts';
import { startTestIdp } from '../oauth/test-support/test-idp.ts';
import type { TestIdp } from '../oauth/test-support/test-idp.ts';
import { openConsoleBrowser } from '../test-support/console-browser.ts';
import type { ConsoleBrowser } from '../test-support/console-browser.ts';
import { freePort } from '../test-support/free-port.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/**
 * A tenant admin sets up single sign-on from the console, with the DNS proof on (the default):
 * the provider and domains are saved, each domain shows the TXT record that proves it, and
 * Verify asks DNS (a real DNS server on loopback) and says what is missing until it is there.
 */
describe('single sign-on in the console, in a real browser', () => {
  let t: TestApp;
  let dns: TestDns;
  let idp: TestIdp;
  let base: string;
  let ui: ConsoleBrowser;
  let acme: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    await ensureConsoleBuilt();
    dns = await startTestDns();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({
      PUBLIC_URL: base,
      // The test identity provider is plain http on loopback.
      OAUTH_ALLOW_INSECURE: 'true',
      SSO_DOMAIN_PROOF: 'dns',
      SSO_DNS_SERVERS: dns.server,
    });
    await t.app.listen({ host: '127.0.0.1', port });
    acme = await t.createTenant('Acme');
    idp = await startTestIdp({ redirectUri: `${base}/oauth/sso/callback`, users: [] });
    t.secrets.add(idp.clientSecret);
    ui = await openConsoleBrowser(base);
  });

  afterAll(async () => {
    await ui?.close();
    await t?.close();
    await idp?.close();
    await dns?.close();
  });

  it('configures the provider, shows each domain’s TXT record, and verifies it once DNS has it', async () => {
    const { page } = ui;
    await page.goto(`${base}/console`);
    await page.getByLabel('Tenant API key').fill(acme.apiKey);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page
      .getByRole('navigation', { name: 'Console' })
      .getByRole('link', { name: 'Single sign-on' })
      .click();
    await page.getByRole('heading', { level: 1, name: 'Single sign-on' }).waitFor();

    // Nothing configured yet: the form alone. A public suffix is refused, naming the fix.
    const form = page.getByRole('form', { name: 'Configure single sign-on' });
    await form.getByLabel('Issuer').fill(idp.issuer);
    await form.getByLabel('Client id').fill(idp.clientId);
    await form.getByLabel('Client secret').fill(idp.clientSecret);
    await form.getByLabel('Allowed email domains').fill('co.uk');
    await form.getByRole('button', { name: 'Save' }).click();
    await expect.poll(() => form.getByRole('alert').innerText()).toContain('"co.uk" is a public suffix');

    await form.getByLabel('Allowed email domains').fill('acme.com, eng.acme.com');
    await form.getByLabel('Console admins').fill('dana@acme.com');
    await form.getByRole('button', { name: 'Save' }).click();
    const domains = page.getByRole('region', { name: 'Email domains' });
    await domains.getByRole('row', { name: /^acme\.com/ }).waitFor();
    await expect.poll(() => domains.getByText('waiting for DNS proof').count()).toBe(2);
    // The secret is write-only: not in the page, and the field is empty again.
    expect(await page.content()).not.toContain(idp.clientSecret);
    await page.getByRole('form', { name: 'Change the configuration' }).waitFor();
    expect(await page.getByLabel('Client secret').inputValue()).toBe('');

    // The record to publish, as the API gives it, with copy buttons.
    const sso = (await (
      await fetch(`${base}/api/v1/mcp/sso`, { headers: { authorization: `Bearer ${acme.apiKey}` } })
    ).json()) as { sso: { domains: Array<{ domain: string; txt_record: { name: string; value: string } }> } };
    const record = sso.sso.domains.find((d) => d.domain === 'acme.com')!.txt_record;
    const row = domains.getByRole('row', { name: /^acme\.com/ });
    await expect.poll(() => row.innerText()).toContain(record.name);
    expect(await row.innerText()).toContain(record.value);
    await row.getByRole('button', { name: 'Copy record value for acme.com' }).click();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(record.value);

    // Verify before the record is published: the answer names the record to publish.
    await row.getByRole('button', { name: 'Verify acme.com' }).click();
    await expect.poll(() => row.getByRole('alert').innerText()).toContain(`no TXT record "${record.value}"`);

    dns.setTxt(record.name, ['v=spf1 -all', record.value]);
    await row.getByRole('button', { name: 'Verify acme.com' }).click();
    await expect
      .poll(() => domains.getByRole('row', { name: /^acme\.com/ }).innerText())
      .toContain('verified');
    await expect
      .poll(() => domains.getByRole('row', { name: /^eng\.acme\.com/ }).innerText())
      .toContain('waiting for DNS proof');

    await ui.shot('sso', { fullPage: true });
    expect(await ui.accessibilityProblems()).toEqual([]);
    // Refused requests (the sign-in check, no configuration yet, the suffix, the early verify) are
    // expected; anything else, such as a Content Security Policy violation, is not.
    expect(ui.consoleErrors.filter((e) => !/status of 40[014] /.test(e))).toEqual([]);
  });

  it('a listed domain whose claim went (taken by a listing that counts no more) is pending, and Verify gives its record', async () => {
    // As when another organization listed it while the deployment asked no proof.
    await t.container.db.kysely
      .deleteFrom('tenant_sso_domains')
      .where('tenant_id', '=', acme.tenantId)
      .where('domain', '=', 'eng.acme.com')
      .execute();
    const page = ui.page;
    await page.reload();
    const domains = page.getByRole('region', { name: 'Email domains' });
    const row = domains.getByRole('row', { name: /^eng\.acme\.com/ });
    await expect.poll(() => row.innerText()).toContain('Nobody holds this domain now');
    await row.getByRole('button', { name: 'Verify eng.acme.com' }).click();
    await expect
      .poll(() => row.getByRole('alert').innerText())
      .toMatch(
        /no TXT record "warden-domain-verification=[A-Za-z0-9_-]{24}" at _warden-challenge\.eng\.acme\.com/,
      );
    // The page read the domains again: the new claim's record is there to copy.
    await row.getByRole('button', { name: 'Copy record value for eng.acme.com' }).waitFor();
    expect(await ui.accessibilityProblems()).toEqual([]);
  });

  it('a verified domain whose record a re-check found missing says until when it routes, and Verify ends it', async () => {
    const { page } = ui;
    const domains = page.getByRole('region', { name: 'Email domains' });
    const row = domains.getByRole('row', { name: /^acme\.com/ });
    // Verified: the record that keeps it so is named.
    await expect.poll(() => row.innerText()).toContain('Keep its TXT record at _warden-challenge.acme.com');

    // The record is taken down, and a day later the re-check finds it missing.
    dns.setTxt('_warden-challenge.acme.com', null);
    await t.container.db.kysely
      .updateTable('tenant_sso_domains')
      .set({ proof_checked_at: new Date(Date.now() - 25 * 3_600_000) })
      .where('domain', '=', 'acme.com')
      .execute();
    expect(await t.container.ssoDomainRecheck.runOnce()).toMatchObject({ applied: { missing: 1 } });
    const view = (await (
      await fetch(`${base}/api/v1/mcp/sso`, { headers: { authorization: `Bearer ${acme.apiKey}` } })
    ).json()) as {
      sso: {
        domains: Array<{ domain: string; txt_record: { name: string; value: string }; lapses_at: string }>;
      };
    };
    const acmeView = view.sso.domains.find((d) => d.domain === 'acme.com')!;
    await page.reload();
    await expect.poll(() => row.innerText()).toContain('verified, record missing');
    const text = await row.innerText();
    expect(text).toContain(acmeView.txt_record.value);
    expect(text).toContain(`stops signing engineers in at ${acmeView.lapses_at.slice(0, 10)}`);
    expect(await ui.accessibilityProblems()).toEqual([]);

    // Verify while it is still missing says so; with the record back, the warning goes.
    await row.getByRole('button', { name: 'Verify acme.com' }).click();
    await expect.poll(() => row.getByRole('alert').innerText()).toContain('publish it again');
    dns.setTxt('_warden-challenge.acme.com', [acmeView.txt_record.value]);
    await row.getByRole('button', { name: 'Verify acme.com' }).click();
    await expect.poll(() => row.innerText()).not.toContain('record missing');
    expect(await row.innerText()).toContain('Engineers of this domain sign in through your provider');
  });
});
