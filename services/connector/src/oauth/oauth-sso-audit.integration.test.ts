import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '@warden/audit';
import { startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

interface Event {
  action: string;
  kind: string;
  outcome: string;
  caller: { type: string; id: string | null };
  details: Record<string, unknown> | null;
}

/**
 * A tenant's SSO configuration decides who signs in as its engineers and who administers it in
 * the console: every change to it is in the trail, with who made it, and never with the secret.
 */
describe('SSO configuration changes are audited with their actor', () => {
  let f: OAuthFixture;
  let globex: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    f = await startOAuthFixture();
    globex = await f.t.createTenant('Globex');
  });
  afterAll(async () => {
    await f.close();
  });

  const auth = () => ({ authorization: `Bearer ${globex.apiKey}` });
  async function putSso(domains: string[], consoleAdmins: string[] = []) {
    const res = await f.t.app.inject({
      method: 'PUT',
      url: '/api/v1/mcp/sso',
      headers: auth(),
      payload: {
        issuer: f.idp.issuer,
        client_id: f.idp.clientId,
        client_secret: f.idp.clientSecret,
        allowed_email_domains: domains,
        console_admins: consoleAdmins,
      },
    });
    return res.statusCode;
  }
  async function ssoEvents(): Promise<Event[]> {
    const res = await f.t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?kind=lifecycle&page_size=100',
      headers: auth(),
    });
    expect(res.statusCode, res.body).toBe(200);
    // Oldest first, as they happened.
    return (res.json() as { events: Event[] }).events.filter((e) => e.action.startsWith('sso.'));
  }
  const exportBody = (format: string) => f.t.auditExport(globex.apiKey, format);

  it('records creation, each change (old → new) and removal; a refused change records nothing', async () => {
    const apiKeyId = (await f.t.container.tenants.authenticate(globex.apiKey))?.apiKeyId;
    expect(apiKeyId).toBeTruthy();

    expect(await putSso(['globex.example'])).toBe(200);
    expect(await putSso(['globex.example', 'eu.globex.example'], ['hank@globex.example'])).toBe(200);
    // Acme's domain: refused with 409, and neither the change nor a record of it is written.
    expect(await putSso(['globex.example', 'acme.com'])).toBe(409);
    const removed = await f.t.app.inject({ method: 'DELETE', url: '/api/v1/mcp/sso', headers: auth() });
    expect(removed.statusCode).toBe(204);
    const again = await f.t.app.inject({ method: 'DELETE', url: '/api/v1/mcp/sso', headers: auth() });
    expect(again.statusCode).toBe(404);

    const all = await ssoEvents();
    // This deployment asks no proof (SSO_DOMAIN_PROOF=none): a listed domain starts routing at
    // once, and says so with its own record, as a proven one does.
    expect(all.map((e) => e.action)).toEqual([
      'sso.configured',
      'sso.domain_verified',
      'sso.changed',
      'sso.domain_verified',
      'sso.removed',
    ]);
    for (const event of all) {
      expect(event.caller).toMatchObject({ type: 'api_key', id: apiKeyId });
      expect(event.outcome).toBe('success');
    }
    expect(all.filter((e) => e.action === 'sso.domain_verified').map((e) => e.details)).toEqual([
      { domain: 'globex.example', proof: 'none' },
      { domain: 'eu.globex.example', proof: 'none' },
    ]);
    const events = all.filter((e) => e.action !== 'sso.domain_verified');
    const [configured, changed, removedEvent] = events as [Event, Event, Event];
    expect(configured.details).toEqual({
      before: null,
      after: {
        issuer: f.idp.issuer,
        client_id: f.idp.clientId,
        identifier_claim: 'email',
        allowed_email_domains: ['globex.example'],
        console_admins: [],
      },
      client_secret: 'replaced',
    });
    // Only what changed, before and after.
    expect(changed.details).toEqual({
      before: { allowed_email_domains: ['globex.example'], console_admins: [] },
      after: {
        allowed_email_domains: ['globex.example', 'eu.globex.example'],
        console_admins: ['hank@globex.example'],
      },
      client_secret: 'replaced',
    });
    expect(removedEvent.details).toMatchObject({
      before: { issuer: f.idp.issuer, allowed_email_domains: ['globex.example', 'eu.globex.example'] },
      after: null,
    });

    // In all three export formats, with its actor, and never with the client secret.
    const [ndjson, ocsf, cef] = await Promise.all(['ndjson', 'ocsf', 'cef'].map(exportBody));
    for (const action of ['sso.configured', 'sso.changed', 'sso.removed']) {
      expect(ndjson, action).toContain(`"action":"${action}"`);
      expect(ocsf, action).toContain(action);
      expect(cef, action).toContain(action);
    }
    expect(cef).toMatch(/act=sso\.changed .*spriv=api_key/);
    for (const body of [ndjson, ocsf, cef, JSON.stringify(events)]) {
      expect(body).not.toContain(f.idp.clientSecret);
    }
    expect((await verifyChain(f.t.db.db.kysely, globex.tenantId)).ok).toBe(true);
  });
});
