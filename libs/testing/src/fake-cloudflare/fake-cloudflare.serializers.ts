import { isProxiable } from './dns-records.validation.ts';
import { stableHash } from './fake-cloudflare.ids.ts';
import type {
  AccountRecord,
  DnsRecord,
  FakeCloudflareState,
  KvNamespaceRecord,
  TokenRecord,
  UserRecord,
  WorkerScriptRecord,
  ZoneRecord,
} from './fake-cloudflare.state.ts';

/** Token dates come back with second precision (`2020-01-01T00:00:00Z`). */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function accountJson(account: AccountRecord): Record<string, unknown> {
  return {
    id: account.id,
    name: account.name,
    type: 'standard',
    settings: {
      enforce_twofactor: false,
      api_access_enabled: null,
      access_approval_expiry: null,
      use_account_custom_ns_by_default: false,
      default_nameservers: 'cloudflare.standard',
      abuse_contact_email: null,
    },
    created_on: account.createdOn.toISOString(),
  };
}

export function userJson(state: FakeCloudflareState, user: UserRecord): Record<string, unknown> {
  const zones = [...state.zones.values()].filter((z) =>
    state.accounts.get(z.accountId)?.members.has(user.id),
  );
  return {
    id: user.id,
    email: user.email,
    username: user.id,
    first_name: null,
    last_name: null,
    telephone: null,
    country: null,
    zipcode: null,
    two_factor_authentication_enabled: false,
    two_factor_authentication_locked: false,
    created_on: user.createdOn.toISOString(),
    modified_on: user.modifiedOn.toISOString(),
    organizations: [],
    has_pro_zones: false,
    has_business_zones: false,
    has_enterprise_zones: false,
    suspended: false,
    betas: [],
    zone_count: zones.length,
  };
}

function policyResources(
  token: TokenRecord,
  policy: TokenRecord['policies'][number],
): Record<string, string> {
  const resources: Record<string, string> = {};
  if (policy.allResources) {
    if (token.owner.kind === 'account') {
      resources[`com.cloudflare.api.account.${token.owner.accountId}`] = '*';
    } else {
      resources['com.cloudflare.api.account.*'] = '*';
      resources[`com.cloudflare.api.user.${token.owner.userId}`] = '*';
    }
  }
  for (const id of policy.accounts) resources[`com.cloudflare.api.account.${id}`] = '*';
  for (const id of policy.zones) resources[`com.cloudflare.api.account.zone.${id}`] = '*';
  return resources;
}

/**
 * The real API lists permission groups by id and dashboard name; the fake's policies hold
 * permission keys, so each key is shown as a group of its own (id derived from the key).
 */
export function tokenJson(state: FakeCloudflareState, token: TokenRecord): Record<string, unknown> {
  return {
    id: token.id,
    name: token.name,
    status: state.tokenStatus(token),
    issued_on: isoSeconds(token.issuedOn),
    modified_on: isoSeconds(token.modifiedOn),
    last_used_on: token.lastUsedOn ? isoSeconds(token.lastUsedOn) : null,
    ...(token.notBefore ? { not_before: isoSeconds(token.notBefore) } : {}),
    ...(token.expiresOn ? { expires_on: isoSeconds(token.expiresOn) } : {}),
    policies: token.policies.map((policy) => ({
      id: policy.id,
      effect: 'allow',
      resources: policyResources(token, policy),
      permission_groups: policy.permissions.map((key) => ({
        id: stableHash('permission-group', key).toString(16).padStart(8, '0').repeat(4),
        name: key,
      })),
    })),
    condition: {},
  };
}

export function zoneJson(state: FakeCloudflareState, zone: ZoneRecord): Record<string, unknown> {
  const account = state.accounts.get(zone.accountId);
  return {
    id: zone.id,
    name: zone.name,
    status: zone.status,
    paused: false,
    type: zone.type,
    development_mode: 0,
    name_servers: zone.nameServers,
    original_name_servers: null,
    original_registrar: null,
    original_dnshost: null,
    created_on: zone.createdOn.toISOString(),
    modified_on: zone.modifiedOn.toISOString(),
    activated_on: zone.activatedOn ? zone.activatedOn.toISOString() : null,
    vanity_name_servers: [],
    meta: {
      step: 2,
      custom_certificate_quota: 0,
      page_rule_quota: 3,
      phishing_detected: false,
      cdn_only: false,
      dns_only: false,
      foundation_dns: false,
    },
    owner: { id: null, type: 'user', email: null },
    account: { id: zone.accountId, name: account?.name ?? zone.accountId },
    tenant: { id: null, name: null },
    tenant_unit: { id: null },
    plan: {
      id: '0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee',
      name: 'Free Website',
      price: 0,
      currency: 'USD',
      frequency: '',
      is_subscribed: false,
      can_subscribe: false,
      legacy_id: 'free',
      legacy_discount: false,
      externally_managed: false,
    },
  };
}

export function dnsRecordJson(record: DnsRecord): Record<string, unknown> {
  return {
    id: record.id,
    name: record.name,
    type: record.type,
    content: record.content,
    proxiable: isProxiable(record.type),
    proxied: record.proxied,
    ttl: record.ttl,
    ...(record.priority !== null ? { priority: record.priority } : {}),
    ...(record.data !== null ? { data: record.data } : {}),
    settings: {},
    meta: {},
    comment: record.comment,
    tags: record.tags,
    created_on: record.createdOn.toISOString(),
    modified_on: record.modifiedOn.toISOString(),
  };
}

export function workerScriptJson(script: WorkerScriptRecord): Record<string, unknown> {
  return {
    id: script.name,
    tag: script.etag.slice(0, 32),
    etag: script.etag,
    handlers: script.handlers,
    created_on: script.createdOn.toISOString(),
    modified_on: script.modifiedOn.toISOString(),
    usage_model: 'standard',
    compatibility_date: script.compatibilityDate,
    compatibility_flags: [],
    logpush: false,
    has_assets: false,
    has_modules: script.usesModules,
    placement: {},
    tail_consumers: null,
  };
}

export function kvNamespaceJson(ns: KvNamespaceRecord): Record<string, unknown> {
  return { id: ns.id, title: ns.title, supports_url_encoding: true };
}
