import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectWithOAuth, TestOAuthClientProvider } from './test-support/oauth-client.ts';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

describe('MCP sign-in in a real browser', () => {
  let f: OAuthFixture;
  let browser: Browser;

  beforeAll(async () => {
    f = await startOAuthFixture();
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-background-networking'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await f?.close();
  });

  it('runs the pages without JavaScript under their CSP, through the IdP, and back to the client', async () => {
    // No script at all: the pages must work as plain HTML forms.
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });

    const provider = new TestOAuthClientProvider(f.callbackUrl, { clientMetadataUrl: f.cimd.clientId });
    const client = await connectWithOAuth(f.mcpUrl, provider, async (url) => {
      const callback = page.waitForRequest((request) => request.url().startsWith(f.callbackUrl));
      await page.goto(url.href);
      await page.getByLabel('Work email').fill(ALICE.email);
      await page.getByRole('button', { name: 'Continue with SSO' }).click();
      // The tenant's identity provider.
      await page.locator('input[name=login]').fill(ALICE.email);
      await page.locator('input[name=password]').fill(ALICE.password);
      await page.getByRole('button', { name: 'Sign-in' }).click();
      await page.getByRole('button', { name: 'Continue' }).click();
      // Back at Warden: the consent screen.
      await page.getByRole('heading', { name: 'Allow access to Cloudflare?' }).waitFor();
      const consent = await page.locator('main').innerText();
      expect(consent).toContain('Acme');
      expect(consent).toContain(ALICE.email);
      expect(consent).toContain('Metadata Client');
      expect(consent).toContain(new URL(f.callbackUrl).host);
      expect(consent).toContain('Acme Production');
      expect(consent).toContain('cloudflare_execute');
      await page.getByRole('button', { name: 'Allow' }).click();
      return (await callback).url();
    });
    try {
      const { tools } = await client.listTools();
      expect(tools.map((x) => x.name)).toEqual(['cloudflare_search', 'cloudflare_execute']);
      const zones = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.length",
        },
      });
      expect((zones.content as Array<{ text: string }>)[0]!.text).toBe('1');
    } finally {
      await client.close();
      await context.close();
    }
    f.t.secrets.add(provider.tokens()!.access_token);
    f.t.secrets.add(provider.tokens()!.refresh_token!);
    expect(cspViolations).toEqual([]);
  });
});
