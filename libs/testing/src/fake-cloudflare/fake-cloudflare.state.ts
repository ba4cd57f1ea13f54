import { createHash } from 'node:crypto';
import { findConflict, validateDnsRecord } from './dns-records.validation.ts';
import type { DnsRecordFields } from './dns-records.validation.ts';
import {
  GLOBAL_API_KEY_SHAPE,
  ID_SHAPE,
  newGlobalApiKey,
  newId,
  newTokenValue,
  stableHash,
} from './fake-cloudflare.ids.ts';
import { expandPermissions, isPermissionShape } from './fake-cloudflare.permissions.ts';

export type FakeTokenStatus = 'active' | 'disabled' | 'expired';
export type FakeZoneStatus = 'initializing' | 'pending' | 'active' | 'moved';

export interface FakeClock {
  now(): Date;
}

/** One policy of a token: its permissions apply to the named accounts (with their zones) and zones. */
export interface FakeTokenPolicy {
  readonly permissions: readonly string[];
  /** With neither `accounts` nor `zones`: everything the owner can reach, now and later. */
  readonly accounts?: readonly string[];
  readonly zones?: readonly string[];
}

interface TokenOptionsBase {
  /** Shorthand for a single policy; ignored when `policies` is given. */
  readonly permissions?: readonly string[];
  readonly accounts?: readonly string[];
  readonly zones?: readonly string[];
  readonly policies?: readonly FakeTokenPolicy[];
  readonly name?: string;
  readonly status?: FakeTokenStatus;
  readonly expiresOn?: Date;
  readonly notBefore?: Date;
}

export interface CreateUserTokenOptions extends TokenOptionsBase {
  readonly userId: string;
}

export interface CreateAccountTokenOptions extends TokenOptionsBase {
  readonly accountId: string;
}

export interface FakeUser {
  readonly id: string;
  readonly email: string;
  readonly globalApiKey: string;
}

export interface FakeAccount {
  readonly id: string;
  readonly name: string;
}

export interface FakeToken {
  readonly id: string;
  /** The secret the client sends as `Authorization: Bearer <value>`. */
  readonly value: string;
}

export interface FakeTokenInfo {
  readonly id: string;
  readonly kind: 'user' | 'account';
  readonly ownerId: string;
  readonly name: string;
  /** Effective status: an active token past `expiresOn` reads as `expired`. */
  readonly status: FakeTokenStatus;
  readonly expiresOn: Date | null;
  readonly notBefore: Date | null;
  readonly lastUsedOn: Date | null;
}

export interface FakeZone {
  readonly id: string;
  readonly name: string;
}

export interface FakeDnsRecord {
  readonly id: string;
  readonly type: string;
  readonly name: string;
  readonly content: string;
}

export interface FakeKvNamespace {
  readonly id: string;
  readonly title: string;
}

export interface UserRecord {
  readonly id: string;
  email: string;
  globalApiKey: string;
  readonly createdOn: Date;
  modifiedOn: Date;
}

export interface AccountRecord {
  readonly id: string;
  name: string;
  readonly createdOn: Date;
  readonly members: Set<string>;
}

export interface PolicyRecord {
  readonly id: string;
  readonly permissions: readonly string[];
  /** `permissions` plus everything they imply, for O(1) checks. */
  readonly granted: ReadonlySet<string>;
  readonly allResources: boolean;
  readonly accounts: ReadonlySet<string>;
  readonly zones: ReadonlySet<string>;
}

export type TokenOwner =
  | { readonly kind: 'user'; readonly userId: string }
  | { readonly kind: 'account'; readonly accountId: string };

export interface TokenRecord {
  readonly id: string;
  readonly value: string;
  name: string;
  readonly owner: TokenOwner;
  status: FakeTokenStatus;
  expiresOn: Date | null;
  notBefore: Date | null;
  readonly policies: readonly PolicyRecord[];
  readonly issuedOn: Date;
  modifiedOn: Date;
  lastUsedOn: Date | null;
}

export interface ZoneRecord {
  readonly id: string;
  readonly name: string;
  readonly accountId: string;
  status: FakeZoneStatus;
  readonly type: 'full' | 'partial' | 'secondary';
  readonly createdOn: Date;
  modifiedOn: Date;
  activatedOn: Date | null;
  readonly nameServers: readonly string[];
}

/** A zone hold (`/zones/{zone_id}/hold`): blocks creating the zone's hostname elsewhere. */
/** A Worker tail session (`POST …/workers/scripts/{script_name}/tails`). */
export interface TailSessionRecord {
  readonly id: string;
  readonly accountId: string;
  readonly script: string;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  /** The JSON body the tail was created with. */
  readonly createBody: unknown;
  /** When `DELETE …/tails/{id}` removed it; null while it lives. */
  deletedAt: Date | null;
  /** WebSocket connections accepted for it. */
  connections: number;
  /** The filter message the client sent after the WebSocket opened, if it sent one. */
  filters: unknown;
  /** Events sent to the client. */
  eventsSent: number;
}

export interface ZoneHold {
  readonly hold: boolean;
  readonly includeSubdomains: boolean;
  readonly holdAfter: string | null;
}

export interface DnsRecord extends DnsRecordFields {
  readonly id: string;
  readonly zoneId: string;
  readonly createdOn: Date;
  readonly modifiedOn: Date;
}

export interface WorkerModule {
  readonly name: string;
  readonly contentType: string;
  readonly content: Buffer;
}

export interface WorkerScriptRecord {
  readonly accountId: string;
  readonly name: string;
  readonly modules: readonly WorkerModule[];
  readonly mainModule: string;
  /** ES module syntax (`main_module`) rather than a service-worker script (`body_part` or a raw body). */
  readonly usesModules: boolean;
  readonly compatibilityDate: string | null;
  readonly bindings: readonly unknown[];
  readonly etag: string;
  readonly handlers: readonly string[];
  readonly createdOn: Date;
  readonly modifiedOn: Date;
}

export interface KvEntry {
  readonly value: Buffer;
  /** Seconds since the epoch, or null for no expiry. */
  readonly expiration: number | null;
  readonly metadata: unknown;
}

export interface KvNamespaceRecord {
  readonly id: string;
  readonly accountId: string;
  title: string;
  readonly values: Map<string, KvEntry>;
}

const NAME_SERVER_POOL = [
  'ada',
  'bob',
  'cruz',
  'dina',
  'elma',
  'finn',
  'gail',
  'hank',
  'iris',
  'jack',
  'kara',
  'leo',
];
const WORKER_NAME = /^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$/;

function describeWorkerHandlers(source: string): string[] {
  const handlers = ['fetch', 'scheduled', 'queue', 'email', 'tail'].filter((h) =>
    new RegExp(`(?:\\b${h}\\s*\\(|addEventListener\\(\\s*['"]${h}['"])`).test(source),
  );
  return handlers.length > 0 ? handlers : ['fetch'];
}

/**
 * Everything the fake knows: users, accounts and memberships, tokens, zones, DNS records,
 * Workers scripts and KV. Tests arrange state here directly; the HTTP routes read and change it.
 */
/** A zone's Logpush job, as `/zones/{zone_id}/logpush/jobs` returns it. */
export interface LogpushJob {
  readonly id: number;
  readonly name: string | null;
  readonly dataset: string;
  readonly destination_conf: string;
  readonly enabled: boolean;
  readonly created_on: string;
}

export class FakeCloudflareState {
  readonly users = new Map<string, UserRecord>();
  readonly accounts = new Map<string, AccountRecord>();
  readonly tokens = new Map<string, TokenRecord>();
  readonly zones = new Map<string, ZoneRecord>();
  readonly dnsRecords = new Map<string, Map<string, DnsRecord>>();
  readonly workerScripts = new Map<string, Map<string, WorkerScriptRecord>>();
  readonly kvNamespaces = new Map<string, KvNamespaceRecord>();
  /** By zone id; a zone without an entry has no hold. */
  readonly zoneHolds = new Map<string, ZoneHold>();
  /** Logpush jobs by zone id, in creation order. */
  readonly logpushJobs = new Map<string, LogpushJob[]>();
  /** Worker tail sessions by id, deleted ones kept (marked) so tests can see they were deleted. */
  readonly tails = new Map<string, TailSessionRecord>();
  /** The events a tail of `accountId/script` streams to its WebSocket (`scriptTailEvents`). */
  readonly tailEvents = new Map<string, readonly unknown[]>();
  /** Where tail WebSockets are served (`ws://…`); the server sets it once it listens. */
  tailSocketBase = 'ws://127.0.0.1';
  readonly #tokensByValue = new Map<string, TokenRecord>();
  readonly #usersByEmail = new Map<string, UserRecord>();
  readonly #clock: FakeClock;
  #knownPermissions: ReadonlySet<string> | null;

  constructor(options: { clock: FakeClock; knownPermissions?: ReadonlySet<string> | null }) {
    this.#clock = options.clock;
    this.#knownPermissions = options.knownPermissions ?? null;
  }

  now(): Date {
    return this.#clock.now();
  }

  /** Empties everything (the instance stays the same, so references held by tests remain valid). */
  clear(): void {
    for (const map of [
      this.users,
      this.accounts,
      this.tokens,
      this.zones,
      this.dnsRecords,
      this.workerScripts,
      this.kvNamespaces,
      this.zoneHolds,
      this.logpushJobs,
      this.tails,
      this.tailEvents,
      this.#tokensByValue,
      this.#usersByEmail,
    ]) {
      map.clear();
    }
  }

  // ---- users and accounts ------------------------------------------------------------------

  createUser(options: { email: string; id?: string; globalApiKey?: string }): FakeUser {
    const email = options.email.trim();
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw new Error(`fake Cloudflare: invalid email ${email}`);
    if (this.#usersByEmail.has(email.toLowerCase())) throw new Error(`fake Cloudflare: user ${email} exists`);
    const id = this.#freshId(options.id, this.users);
    const globalApiKey = options.globalApiKey ?? newGlobalApiKey();
    if (!GLOBAL_API_KEY_SHAPE.test(globalApiKey)) {
      throw new Error('fake Cloudflare: a Global API Key is 37 lowercase hex characters');
    }
    const now = this.now();
    const user: UserRecord = { id, email, globalApiKey, createdOn: now, modifiedOn: now };
    this.users.set(id, user);
    this.#usersByEmail.set(email.toLowerCase(), user);
    return { id, email, globalApiKey };
  }

  /** Replaces the user's Global API Key (what "View / Change" does in the dashboard). */
  rotateGlobalApiKey(userId: string): string {
    const user = this.#user(userId);
    user.globalApiKey = newGlobalApiKey();
    user.modifiedOn = this.now();
    return user.globalApiKey;
  }

  findUserByEmail(email: string): UserRecord | undefined {
    return this.#usersByEmail.get(email.trim().toLowerCase());
  }

  createAccount(options: { name: string; members?: readonly string[]; id?: string }): FakeAccount {
    const id = this.#freshId(options.id, this.accounts);
    for (const member of options.members ?? []) this.#user(member);
    const account: AccountRecord = {
      id,
      name: options.name,
      createdOn: this.now(),
      members: new Set(options.members ?? []),
    };
    this.accounts.set(id, account);
    return { id, name: account.name };
  }

  addMember(accountId: string, userId: string): void {
    this.#user(userId);
    this.#account(accountId).members.add(userId);
  }

  removeMember(accountId: string, userId: string): void {
    this.#account(accountId).members.delete(userId);
  }

  // ---- tokens ------------------------------------------------------------------------------

  createUserToken(options: CreateUserTokenOptions): FakeToken {
    this.#user(options.userId);
    return this.#createToken({ kind: 'user', userId: options.userId }, options);
  }

  createAccountToken(options: CreateAccountTokenOptions): FakeToken {
    const account = this.#account(options.accountId);
    for (const policy of this.#policies(options)) {
      for (const other of policy.accounts ?? []) {
        if (other !== account.id)
          throw new Error('fake Cloudflare: an account token only reaches its own account');
      }
    }
    return this.#createToken({ kind: 'account', accountId: options.accountId }, options);
  }

  setTokenStatus(tokenId: string, status: FakeTokenStatus): void {
    const token = this.#token(tokenId);
    token.status = status;
    token.modifiedOn = this.now();
  }

  setTokenExpiry(tokenId: string, expiresOn: Date | null): void {
    const token = this.#token(tokenId);
    token.expiresOn = expiresOn;
    token.modifiedOn = this.now();
  }

  deleteToken(tokenId: string): boolean {
    const token = this.tokens.get(tokenId);
    if (!token) return false;
    this.tokens.delete(tokenId);
    this.#tokensByValue.delete(token.value);
    return true;
  }

  findTokenByValue(value: string): TokenRecord | undefined {
    return this.#tokensByValue.get(value);
  }

  tokenStatus(token: TokenRecord, now: Date = this.now()): FakeTokenStatus {
    if (token.status === 'active' && token.expiresOn && token.expiresOn.getTime() <= now.getTime())
      return 'expired';
    return token.status;
  }

  getToken(tokenId: string): FakeTokenInfo | undefined {
    const token = this.tokens.get(tokenId);
    if (!token) return undefined;
    return {
      id: token.id,
      kind: token.owner.kind,
      ownerId: token.owner.kind === 'user' ? token.owner.userId : token.owner.accountId,
      name: token.name,
      status: this.tokenStatus(token),
      expiresOn: token.expiresOn,
      notBefore: token.notBefore,
      lastUsedOn: token.lastUsedOn,
    };
  }

  // ---- zones and DNS -----------------------------------------------------------------------

  createZone(options: {
    accountId: string;
    name: string;
    status?: FakeZoneStatus;
    type?: 'full' | 'partial' | 'secondary';
    id?: string;
  }): FakeZone {
    this.#account(options.accountId);
    const name = options.name.trim().toLowerCase().replace(/\.$/, '');
    for (const zone of this.zones.values()) {
      if (zone.accountId === options.accountId && zone.name === name) {
        throw new Error(`fake Cloudflare: zone ${name} exists in account ${options.accountId}`);
      }
    }
    const id = this.#freshId(options.id, this.zones);
    const now = this.now();
    const status = options.status ?? 'active';
    const seed = stableHash(id);
    const ns = (n: number) =>
      `${NAME_SERVER_POOL[(seed + n * 7) % NAME_SERVER_POOL.length] ?? 'ns'}.ns.cloudflare.com`;
    this.zones.set(id, {
      id,
      name,
      accountId: options.accountId,
      status,
      type: options.type ?? 'full',
      createdOn: now,
      modifiedOn: now,
      activatedOn: status === 'active' ? now : null,
      nameServers: [ns(0), ns(1)],
    });
    this.dnsRecords.set(id, new Map());
    return { id, name };
  }

  deleteZone(zoneId: string): boolean {
    this.dnsRecords.delete(zoneId);
    this.zoneHolds.delete(zoneId);
    this.logpushJobs.delete(zoneId);
    return this.zones.delete(zoneId);
  }

  /** Validates like the API (throws the API's error) and refuses duplicates. */
  createDnsRecord(options: {
    zoneId: string;
    type: string;
    name: string;
    content: string;
    ttl?: number;
    proxied?: boolean;
    priority?: number;
    comment?: string;
  }): FakeDnsRecord {
    const { zoneId, ...body } = options;
    const record = this.insertDnsRecord(this.#zone(zoneId), body);
    return { id: record.id, type: record.type, name: record.name, content: record.content };
  }

  insertDnsRecord(zone: ZoneRecord, body: unknown): DnsRecord {
    const fields = validateDnsRecord(body, zone.name);
    const records = this.#records(zone.id);
    const conflict = findConflict(fields, records.values());
    if (conflict) throw conflict;
    const now = this.now();
    const record: DnsRecord = { ...fields, id: newId(), zoneId: zone.id, createdOn: now, modifiedOn: now };
    records.set(record.id, record);
    return record;
  }

  replaceDnsRecord(zone: ZoneRecord, previous: DnsRecord, body: unknown, partial: boolean): DnsRecord {
    const fields = validateDnsRecord(body, zone.name, partial ? previous : undefined);
    const records = this.#records(zone.id);
    const others = [...records.values()].filter((r) => r.id !== previous.id);
    const conflict = findConflict(fields, others);
    if (conflict) throw conflict;
    const record: DnsRecord = {
      ...fields,
      id: previous.id,
      zoneId: zone.id,
      createdOn: previous.createdOn,
      modifiedOn: this.now(),
    };
    records.set(record.id, record);
    return record;
  }

  listDnsRecords(zoneId: string): DnsRecord[] {
    return [...this.#records(zoneId).values()];
  }

  // ---- Workers and KV ----------------------------------------------------------------------

  /** Stores a Worker; `modules` absent means one service-worker script made of `content`. */
  putWorkerScript(options: {
    accountId: string;
    name: string;
    content?: string | Buffer;
    modules?: readonly WorkerModule[];
    mainModule?: string;
    usesModules?: boolean;
    compatibilityDate?: string | null;
    bindings?: readonly unknown[];
  }): WorkerScriptRecord {
    this.#account(options.accountId);
    if (!WORKER_NAME.test(options.name))
      throw new Error(`fake Cloudflare: invalid Worker name ${options.name}`);
    const usesModules = options.usesModules ?? options.modules !== undefined;
    const modules = options.modules ?? [
      {
        name: usesModules ? 'index.js' : 'script.js',
        contentType: usesModules ? 'application/javascript+module' : 'application/javascript',
        content: Buffer.from(options.content ?? ''),
      },
    ];
    const mainModule = options.mainModule ?? modules[0]?.name ?? 'index.js';
    const main = modules.find((m) => m.name === mainModule);
    if (!main) throw new Error(`fake Cloudflare: main module ${mainModule} missing`);
    let scripts = this.workerScripts.get(options.accountId);
    if (!scripts) {
      scripts = new Map();
      this.workerScripts.set(options.accountId, scripts);
    }
    const now = this.now();
    const hash = createHash('sha256');
    for (const m of modules) hash.update(m.name).update(m.content);
    const record: WorkerScriptRecord = {
      accountId: options.accountId,
      name: options.name,
      modules,
      mainModule,
      usesModules,
      compatibilityDate: options.compatibilityDate ?? null,
      bindings: options.bindings ?? [],
      etag: hash.digest('hex'),
      handlers: describeWorkerHandlers(main.content.toString('utf8')),
      createdOn: scripts.get(options.name)?.createdOn ?? now,
      modifiedOn: now,
    };
    scripts.set(options.name, record);
    return record;
  }

  getWorkerScript(accountId: string, name: string): WorkerScriptRecord | undefined {
    return this.workerScripts.get(accountId)?.get(name);
  }

  deleteWorkerScript(accountId: string, name: string): boolean {
    return this.workerScripts.get(accountId)?.delete(name) ?? false;
  }

  createKvNamespace(options: { accountId: string; title: string; id?: string }): FakeKvNamespace {
    this.#account(options.accountId);
    const id = this.#freshId(options.id, this.kvNamespaces);
    this.kvNamespaces.set(id, { id, accountId: options.accountId, title: options.title, values: new Map() });
    return { id, title: options.title };
  }

  putKvValue(options: {
    namespaceId: string;
    key: string;
    value: string | Uint8Array;
    expiration?: number;
    metadata?: unknown;
  }): void {
    const ns = this.kvNamespaces.get(options.namespaceId);
    if (!ns) throw new Error(`fake Cloudflare: no KV namespace ${options.namespaceId}`);
    ns.values.set(options.key, {
      value: Buffer.from(options.value),
      expiration: options.expiration ?? null,
      metadata: options.metadata ?? null,
    });
  }

  /** A live (not expired) KV entry. */
  getKvEntry(namespaceId: string, key: string): KvEntry | undefined {
    const entry = this.kvNamespaces.get(namespaceId)?.values.get(key);
    if (!entry) return undefined;
    if (entry.expiration !== null && entry.expiration * 1000 <= this.now().getTime()) return undefined;
    return entry;
  }

  // ---- internals ---------------------------------------------------------------------------

  #createToken(owner: TokenOwner, options: TokenOptionsBase): FakeToken {
    const policies = this.#policies(options).map((policy): PolicyRecord => {
      for (const permission of policy.permissions) {
        if (!isPermissionShape(permission)) {
          throw new Error(`fake Cloudflare: ${JSON.stringify(permission)} is not a permission key`);
        }
        if (this.#knownPermissions && !this.#knownPermissions.has(permission)) {
          throw new Error(`fake Cloudflare: ${permission} is not a permission key of the OpenAPI document`);
        }
      }
      for (const zoneId of policy.zones ?? []) this.#zone(zoneId);
      for (const accountId of policy.accounts ?? []) this.#account(accountId);
      const allResources = policy.accounts === undefined && policy.zones === undefined;
      return {
        id: newId(),
        permissions: [...policy.permissions],
        granted: expandPermissions(policy.permissions),
        allResources,
        accounts: new Set(policy.accounts ?? []),
        zones: new Set(policy.zones ?? []),
      };
    });
    const now = this.now();
    const token: TokenRecord = {
      id: newId(),
      value: newTokenValue(),
      name: options.name ?? (owner.kind === 'user' ? 'user token' : 'account token'),
      owner,
      status: options.status ?? 'active',
      expiresOn: options.expiresOn ?? null,
      notBefore: options.notBefore ?? null,
      policies,
      issuedOn: now,
      modifiedOn: now,
      lastUsedOn: null,
    };
    this.tokens.set(token.id, token);
    this.#tokensByValue.set(token.value, token);
    return { id: token.id, value: token.value };
  }

  #policies(options: TokenOptionsBase): readonly FakeTokenPolicy[] {
    if (options.policies) return options.policies;
    return [
      {
        permissions: options.permissions ?? [],
        ...(options.accounts !== undefined ? { accounts: options.accounts } : {}),
        ...(options.zones !== undefined ? { zones: options.zones } : {}),
      },
    ];
  }

  #freshId(requested: string | undefined, existing: ReadonlyMap<string, unknown>): string {
    if (requested === undefined) return newId();
    if (!ID_SHAPE.test(requested)) throw new Error(`fake Cloudflare: ids are 32 lowercase hex characters`);
    if (existing.has(requested)) throw new Error(`fake Cloudflare: id ${requested} is taken`);
    return requested;
  }

  #user(id: string): UserRecord {
    const user = this.users.get(id);
    if (!user) throw new Error(`fake Cloudflare: no user ${id}`);
    return user;
  }

  #account(id: string): AccountRecord {
    const account = this.accounts.get(id);
    if (!account) throw new Error(`fake Cloudflare: no account ${id}`);
    return account;
  }

  #zone(id: string): ZoneRecord {
    const zone = this.zones.get(id);
    if (!zone) throw new Error(`fake Cloudflare: no zone ${id}`);
    return zone;
  }

  #token(id: string): TokenRecord {
    const token = this.tokens.get(id);
    if (!token) throw new Error(`fake Cloudflare: no token ${id}`);
    return token;
  }

  #records(zoneId: string): Map<string, DnsRecord> {
    let records = this.dnsRecords.get(zoneId);
    if (!records) {
      records = new Map();
      this.dnsRecords.set(zoneId, records);
    }
    return records;
  }
}
