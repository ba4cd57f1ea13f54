import { FAKE_CF_PERMISSION_GROUPS } from './fake-cloudflare.permissions.ts';
import type {
  FakeAccount,
  FakeCloudflareState,
  FakeKvNamespace,
  FakeToken,
  FakeUser,
  FakeZone,
} from './fake-cloudflare.state.ts';

export interface FakeDemo {
  readonly user: FakeUser;
  readonly account: FakeAccount;
  /** Every permission group on everything the user reaches. */
  readonly userToken: FakeToken;
  /** Every account-level and zone-level group on the account (no user-level ones). */
  readonly accountToken: FakeToken;
  /** DNS Read + Zone Read on the demo zone only. */
  readonly readOnlyToken: FakeToken;
  readonly zone: FakeZone;
  readonly workerName: string;
  readonly kvNamespace: FakeKvNamespace;
}

/** Every key the dashboard groups above grant: a "full access" token. */
export const FAKE_CF_ALL_PERMISSIONS: readonly string[] = [
  ...new Set(Object.values(FAKE_CF_PERMISSION_GROUPS).flat()),
];

const WORKER_SOURCE = `export default {
  async fetch(request, env) {
    const hits = Number((await env.DEMO_KV.get('hits')) ?? '0') + 1;
    await env.DEMO_KV.put('hits', String(hits));
    return new Response(\`hello from the fake Cloudflare (\${hits} hits)\`);
  },
};
`;

/** A typical fixture in one call: a user, an account, tokens, a zone with records, a Worker and KV. */
export function seedDemo(
  state: FakeCloudflareState,
  options: { email?: string; zoneName?: string } = {},
): FakeDemo {
  const user = state.createUser({ email: options.email ?? 'demo@example.com' });
  const account = state.createAccount({ name: 'Demo Account', members: [user.id] });
  const userToken = state.createUserToken({
    userId: user.id,
    name: 'demo full access',
    permissions: FAKE_CF_ALL_PERMISSIONS,
  });
  const accountToken = state.createAccountToken({
    accountId: account.id,
    name: 'demo account token',
    permissions: FAKE_CF_ALL_PERMISSIONS.filter((p) => !p.startsWith('com.cloudflare.api.user.')),
  });
  const zone = state.createZone({ accountId: account.id, name: options.zoneName ?? 'example.com' });
  const readOnlyToken = state.createUserToken({
    userId: user.id,
    name: 'demo DNS read-only',
    permissions: ['#zone:read', '#dns_records:read'],
    zones: [zone.id],
  });
  for (const record of [
    { type: 'A', name: '@', content: '192.0.2.10', proxied: true },
    { type: 'AAAA', name: '@', content: '2001:db8::10', proxied: true },
    { type: 'CNAME', name: 'www', content: zone.name, proxied: true },
    { type: 'MX', name: '@', content: `mail.${zone.name}`, priority: 10 },
    { type: 'A', name: 'mail', content: '192.0.2.25' },
    { type: 'TXT', name: '@', content: 'v=spf1 mx -all' },
  ]) {
    state.createDnsRecord({ zoneId: zone.id, ...record });
  }
  const kvNamespace = state.createKvNamespace({ accountId: account.id, title: 'demo-kv' });
  state.putKvValue({ namespaceId: kvNamespace.id, key: 'greeting', value: 'hello' });
  state.putKvValue({ namespaceId: kvNamespace.id, key: 'hits', value: '0' });
  const workerName = 'hello-worker';
  state.putWorkerScript({
    accountId: account.id,
    name: workerName,
    modules: [
      { name: 'index.js', contentType: 'application/javascript+module', content: Buffer.from(WORKER_SOURCE) },
    ],
    mainModule: 'index.js',
    compatibilityDate: '2025-01-01',
    bindings: [{ type: 'kv_namespace', name: 'DEMO_KV', namespace_id: kvNamespace.id }],
  });
  return { user, account, userToken, accountToken, readOnlyToken, zone, workerName, kvNamespace };
}
