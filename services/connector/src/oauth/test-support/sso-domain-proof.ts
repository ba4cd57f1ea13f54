import type { AuditEventView } from '../../test-support/audit-event-view.ts';
import { startTestApp } from '../../test-support/test-app.ts';
import type { TestApp } from '../../test-support/test-app.ts';
import { startOAuthFixture } from './oauth-fixture.ts';
import type { OAuthFixture } from './oauth-fixture.ts';
import { startTestDns } from './test-dns.ts';
import type { TestDns } from './test-dns.ts';

export interface SsoDomainView {
  domain: string;
  status: 'verified' | 'pending' | 'held_elsewhere';
  txt_record: { type: 'TXT'; name: string; value: string } | null;
  proof_missing_since: string | null;
  lapses_at: string | null;
}
/** A lifecycle record as the tenant's audit API returns it: the parts these tests read. */
export type LifecycleEventView = Pick<AuditEventView, 'action' | 'caller' | 'details'>;
export interface SsoAnswer {
  sso?: { allowed_email_domains: string[]; domains: SsoDomainView[] };
  error?: { code: string; field?: string; message: string };
}

/** A tenant's SSO calls on one replica (`app`), with the fixture's identity provider. */
function tenantSsoApi(app: TestApp, f: OAuthFixture) {
  async function call(
    apiKey: string,
    method: 'GET' | 'PUT' | 'POST' | 'DELETE',
    url: string,
    payload?: object,
  ) {
    const res = await app.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${apiKey}` },
      ...(payload ? { payload } : {}),
    });
    return { status: res.statusCode, body: (res.body ? res.json() : {}) as SsoAnswer, raw: res.body };
  }
  return {
    call,
    putSso: (apiKey: string, domains: string[]) =>
      call(apiKey, 'PUT', '/api/v1/mcp/sso', {
        issuer: f.idp.issuer,
        client_id: f.idp.clientId,
        client_secret: f.idp.clientSecret,
        allowed_email_domains: domains,
      }),
    verify: (apiKey: string, domain: string) =>
      call(apiKey, 'POST', `/api/v1/mcp/sso/domains/${encodeURIComponent(domain)}/verify`),
    domainOf: async (apiKey: string, domain: string) =>
      (await call(apiKey, 'GET', '/api/v1/mcp/sso')).body.sso?.domains.find((d) => d.domain === domain),
    /** The operator releases a domain (`DELETE /admin/v1/sso/domains/{domain}`) on this replica. */
    release: (domain: string) =>
      app.app.inject({
        method: 'DELETE',
        url: `/admin/v1/sso/domains/${encodeURIComponent(domain)}`,
        headers: { authorization: `Bearer ${app.adminToken}` },
      }),
  };
}

/**
 * The OAuth fixture with the SSO domain proof on, asking a real DNS server on loopback, and the
 * tenant API calls the proof's tests make. Acme's SSO lists acme.com, pending until proven.
 * `SSO_VERIFY_LIMIT` is 30 a minute (the default is 5): these tests ask for many proofs on purpose.
 */
export async function startDomainProofFixture() {
  const dns: TestDns = await startTestDns();
  let f: OAuthFixture;
  try {
    f = await startOAuthFixture({
      SSO_DOMAIN_PROOF: 'dns',
      SSO_DNS_SERVERS: dns.server,
      SSO_VERIFY_LIMIT: '30/60',
    });
  } catch (error) {
    await dns.close();
    throw error;
  }

  const tenantApi = tenantSsoApi(f.t, f);
  /** Replicas started by `startReplicaWithoutProof`, closed with the fixture. */
  const replicas: TestApp[] = [];

  /** Publishes the tenant's TXT record for `domain` on the DNS server, as the domain's owner would. */
  async function publishTxt(apiKey: string, domain: string) {
    const record = (await tenantApi.domainOf(apiKey, domain))?.txt_record;
    if (!record) throw new Error(`${domain} has no TXT record to publish`);
    dns.setTxt(record.name, [record.value]);
    return record;
  }

  return {
    f,
    dns,
    ...tenantApi,
    publishTxt,
    /** Publishes the tenant's TXT record for `domain` and proves it. */
    async prove(apiKey: string, domain: string) {
      await publishTxt(apiKey, domain);
      return tenantApi.verify(apiKey, domain);
    },
    /**
     * A second replica on the same database (and key file, and DNS server) with the proof off
     * (`SSO_DOMAIN_PROOF=none`), as a deployment that ran without it; the same tenant calls on it.
     * `close` closes it.
     */
    async startReplicaWithoutProof() {
      const app = await startTestApp(
        { SSO_DOMAIN_PROOF: 'none', SSO_DNS_SERVERS: dns.server, OAUTH_ALLOW_INSECURE: 'true' },
        { replicaOf: f.t },
      );
      replicas.push(app);
      return { app, ...tenantSsoApi(app, f) };
    },
    /** Every tenant's claims of `domain` in the database, by tenant id. */
    async claimsOf(domain: string) {
      return f.t.container.db.kysely
        .selectFrom('tenant_sso_domains')
        .select([
          'domain',
          'tenant_id',
          'verified_at',
          'proof_token',
          'proven_by',
          'proof_checked_at',
          'proof_missing_since',
        ])
        .where('domain', '=', domain)
        .orderBy('tenant_id')
        .execute();
    },
    /** The tenant's lifecycle records with this action, oldest first. */
    async lifecycleEvents(apiKey: string, action: string): Promise<LifecycleEventView[]> {
      const res = await f.t.app.inject({
        method: 'GET',
        url: '/api/v1/audit/events?kind=lifecycle&page_size=100',
        headers: { authorization: `Bearer ${apiKey}` },
      });
      const events = (res.json() as { events: LifecycleEventView[] }).events;
      return events.filter((e) => e.action === action);
    },
    /** Where the sign-in page sends an email: the identity provider's URL, or the page it stays on. */
    async signInGoesTo(email: string): Promise<{ url: string; body: string }> {
      const ua = f.userAgent();
      const login = await ua.get(f.authorization().url.href);
      return ua.submit(login, { email }, '/sso');
    },
    async close() {
      for (const app of replicas.splice(0)) await app.close();
      await f.close();
      await dns.close();
    },
  };
}

export type DomainProofFixture = Awaited<ReturnType<typeof startDomainProofFixture>>;

/** The replica without the proof that `startReplicaWithoutProof` starts, with the tenant calls on it. */
export type ReplicaWithoutProof = Awaited<ReturnType<DomainProofFixture['startReplicaWithoutProof']>>;
