import { WardenError, invalidRequest, notFound } from '@warden/core';
import { lifecycleRecord } from '@warden/audit';
import type { AuditCaller } from '@warden/audit';
import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { validateIdentifier } from './connected-accounts.service.ts';
import { sealIdentity, sealedColumns, sealedFromColumns } from './envelope.ts';
import type { Envelope, SealIdentity } from './envelope.ts';
import type { ActorContext, LifecycleAudit } from './lifecycle.ts';
import {
  DOMAIN,
  counts,
  dropOthersClaimsNotRouting,
  domainProofRecord,
  domainVerifiedRecord,
  heldByOthers,
  heldConflict,
  isPublicSuffix,
  lapseTime,
  lockClaims,
  lookUpProof,
  newClaim,
  newProofToken,
  normalizeDomain,
  related,
  provableByDns,
  publicSuffixRefusal,
  recheckOf,
  routes,
  routesNot,
  tooLongToProve,
} from './sso-domain-claims.ts';
import type { DomainClaim, DomainProof } from './sso-domain-claims.ts';
import { applyLookUp } from './sso-domain-recheck.ts';

/** A tenant's OpenID Connect provider for MCP sign-in. The client secret never leaves the vault. */
export interface SsoConfig {
  readonly tenantId: string;
  readonly issuer: string;
  readonly clientId: string;
  /** The ID token claim whose value becomes the MCP identifier (`email`, `preferred_username`, …). */
  readonly identifierClaim: string;
  /**
   * Lower-case domains an engineer's verified email must belong to. Each domain belongs to one
   * tenant only (the first to prove it, or to list it where no proof is asked): the sign-in page
   * routes an email to its domain's tenant.
   */
  readonly allowedEmailDomains: readonly string[];
  /**
   * Identifiers (values of `identifierClaim`) that may sign in to the admin console through this
   * provider. Empty (the default): no one does; tenant admins sign in with an API key.
   */
  readonly consoleAdmins: readonly string[];
  /** Where each allowed domain stands: only `verified` ones route engineers and sign them in. */
  readonly domains: readonly SsoDomain[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/**
 * `verified`: proven (or claimed where the deployment asks no proof); `pending`: waiting for its
 * DNS TXT record (under the DNS proof, also a claim that counted only because it was listed);
 * `held_elsewhere`: another organization proved it first.
 */
export type SsoDomainStatus = 'verified' | 'pending' | 'held_elsewhere';

export interface SsoDomain {
  readonly domain: string;
  readonly status: SsoDomainStatus;
  /**
   * The TXT record that proves a `pending` domain, and that keeps a domain `verified` by it proven
   * where proofs are re-checked; null otherwise, and for one the tenant must verify to claim again.
   */
  readonly txtRecord: { readonly name: string; readonly value: string } | null;
  /** A verified domain whose record a re-check found missing: since when; null otherwise. */
  readonly proofMissingSince: Date | null;
  /** When such a domain lapses to pending unless its record is back; null otherwise. */
  readonly lapsesAt: Date | null;
}

export interface SsoConfigInput {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly identifierClaim: string;
  readonly allowedEmailDomains: readonly string[];
  readonly consoleAdmins: readonly string[];
}

export interface SsoConfigService {
  /** Creates or replaces the configuration, recorded in the trail with its actor (`sso.configured` or `sso.changed`). */
  put(ctx: ActorContext, input: SsoConfigInput): Promise<SsoConfig>;
  get(tenantId: string): Promise<SsoConfig | null>;
  /** The configuration with its client secret, for the sign-in that needs it. */
  open(tenantId: string): Promise<{ config: SsoConfig; clientSecret: string }>;
  /** Removes the configuration and frees its domains (`sso.removed` in the trail). */
  remove(ctx: ActorContext): Promise<void>;
  /**
   * Proves a listed domain by its DNS TXT record (`domainProofRecord`); the first organization
   * to prove a domain keeps it, and others' claims that do not route, of it and of names above
   * and under it, go. A listed domain the tenant has no claim of any more (and nobody holds) gets
   * a new claim first; a claim without a token is given one (see `claimToProve`).
   */
  verifyDomain(ctx: ActorContext, domain: string): Promise<SsoConfig>;
  /**
   * The operator's way out of a domain dispute: every claim of `domain` goes (each tenant that
   * had one gets an `sso.domain_released` record naming the actor), so the domain routes nobody.
   * With the DNS proof on, tenants whose configuration still lists it get a new pending claim with
   * a new token: whoever proves it first keeps it, as for a domain never claimed.
   */
  releaseDomain(actor: AuditCaller, domain: string): Promise<{ domain: string; releasedFrom: string[] }>;
  /** The tenant whose SSO engineers of this (verified) email domain sign in with; one at most. */
  tenantForDomain(domain: string): Promise<{ tenantId: string; tenantName: string } | null>;
}

/**
 * Takes an identifier off a tenant's `console_admins` (offboarding: it cannot sign straight back
 * in). The configuration's `updated_at` stays, so the other admins' console sessions go on.
 */
export async function removeSsoConsoleAdmin(
  db: Kysely<Database>,
  tenantId: string,
  identifier: string,
): Promise<boolean> {
  const result = await db
    .updateTable('tenant_sso_configs')
    .set({ console_admins: sql`console_admins - ${identifier}::text` })
    .where('tenant_id', '=', tenantId)
    .where(sql<boolean>`console_admins ? ${identifier}::text`)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

const CLAIM = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/;

/** Validates and normalizes the parts of an SSO configuration a tenant sends. */
export function validateSsoConfigInput(
  input: SsoConfigInput,
  options: { allowInsecureIssuers: boolean },
): SsoConfigInput {
  const issuer = URL.parse(input.issuer);
  if (
    !issuer ||
    (issuer.protocol !== 'https:' && !(options.allowInsecureIssuers && issuer.protocol === 'http:'))
  ) {
    throw invalidRequest('issuer', 'must be the https:// URL of your OpenID Connect provider (its `issuer`)');
  }
  if (issuer.search || issuer.hash || issuer.username || issuer.password) {
    throw invalidRequest('issuer', 'must not carry a query, fragment or credentials');
  }
  if (input.clientId.length === 0 || input.clientId.length > 512) {
    throw invalidRequest('client_id', 'must be the client id Warden is registered under at your provider');
  }
  if (input.clientSecret.length === 0 || input.clientSecret.length > 2048) {
    throw invalidRequest('client_secret', 'must be the client secret of that client (1 to 2048 characters)');
  }
  if (!CLAIM.test(input.identifierClaim)) {
    throw invalidRequest('identifier_claim', 'must be an ID token claim name such as "email"');
  }
  const domains = [...new Set(input.allowedEmailDomains.map((d) => d.trim().toLowerCase()))];
  if (domains.length === 0 || domains.length > 50) {
    throw invalidRequest('allowed_email_domains', 'list 1 to 50 email domains, e.g. ["acme.com"]');
  }
  const bad = domains.find((d) => !DOMAIN.test(d));
  if (bad !== undefined) {
    throw invalidRequest('allowed_email_domains', `"${bad}" is not a domain name such as "acme.com"`);
  }
  const suffix = domains.find(isPublicSuffix);
  if (suffix !== undefined) throw publicSuffixRefusal('allowed_email_domains', suffix);
  if (input.consoleAdmins.length > 100) {
    throw invalidRequest('console_admins', 'list at most 100 identifiers');
  }
  const consoleAdmins = [
    ...new Set(input.consoleAdmins.map((a) => validateIdentifier(a.trim(), 'console_admins'))),
  ];
  return {
    issuer: issuer.href.replace(/\/$/, ''),
    clientId: input.clientId,
    clientSecret: input.clientSecret,
    identifierClaim: input.identifierClaim,
    allowedEmailDomains: domains,
    consoleAdmins,
  };
}

interface ConfigRow {
  tenant_id: string;
  issuer: string;
  client_id: string;
  identifier_claim: string;
  allowed_email_domains: string[];
  console_admins: string[];
  created_at: Date;
  updated_at: Date;
}

/**
 * The configuration with where each listed domain stands under `mode`. `heldElsewhere` says
 * whether a listed domain the tenant has no claim of is another organization's.
 */
function toConfig(
  row: ConfigRow,
  claims: readonly DomainClaim[],
  proof: Pick<DomainProof, 'mode' | 'recheck'>,
  heldElsewhere: (domain: string) => boolean,
): SsoConfig {
  const { mode } = proof;
  const recheck = recheckOf(proof);
  const byDomain = new Map(claims.map((c) => [c.domain, c]));
  return {
    tenantId: row.tenant_id,
    issuer: row.issuer,
    clientId: row.client_id,
    identifierClaim: row.identifier_claim,
    allowedEmailDomains: row.allowed_email_domains,
    consoleAdmins: row.console_admins,
    domains: row.allowed_email_domains.map((domain): SsoDomain => {
      const claim = byDomain.get(domain);
      // Without a claim: another organization's, or nobody's (its claim went to a listing that
      // counts no more, or an operator released it where no proof is asked): pending, and
      // verifying it makes a new claim (with its record under the DNS proof).
      const unchecked = { proofMissingSince: null, lapsesAt: null };
      if (!claim)
        return {
          domain,
          status: heldElsewhere(domain) ? 'held_elsewhere' : 'pending',
          txtRecord: null,
          ...unchecked,
        };
      if (counts(claim, mode)) {
        // A record that keeps its domain proven is shown, so the tenant knows what must stay.
        const kept = recheck && claim.proven_by === 'dns' && claim.proof_token;
        if (!kept) return { domain, status: 'verified', txtRecord: null, ...unchecked };
        const missing = claim.proof_missing_since;
        return {
          domain,
          status: 'verified',
          txtRecord: domainProofRecord(domain, kept),
          proofMissingSince: missing,
          lapsesAt: missing ? lapseTime(missing, recheck) : null,
        };
      }
      return {
        domain,
        status: 'pending',
        txtRecord: claim.proof_token ? domainProofRecord(domain, claim.proof_token) : null,
        ...unchecked,
      };
    }),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The row identity the client secret is sealed to: a copy in another tenant's row does not open. */
function identity(tenantId: string): SealIdentity {
  return sealIdentity('sso_client_secret', tenantId, tenantId);
}

/**
 * What an SSO change record says: the public parts before and after (those that changed; all of
 * them when the configuration is created or removed). The client secret is never in it; a `PUT`
 * always seals the one it carries, which the record says as `client_secret: "replaced"`.
 */
function ssoChangeDetails(before: ConfigRow | null, after: ConfigRow | null): Record<string, unknown> {
  // The public columns only: never the claims, never a secret.
  const view = (c: ConfigRow | null): Record<string, unknown> =>
    c
      ? {
          issuer: c.issuer,
          client_id: c.client_id,
          identifier_claim: c.identifier_claim,
          allowed_email_domains: [...c.allowed_email_domains],
          console_admins: [...c.console_admins],
        }
      : {};
  const [b, a] = [view(before), view(after)];
  const keys = Object.keys(before && after ? a : { ...b, ...a }).filter(
    (k) => !(before && after) || JSON.stringify(b[k]) !== JSON.stringify(a[k]),
  );
  return {
    before: before ? Object.fromEntries(keys.map((k) => [k, b[k]])) : null,
    after: after ? Object.fromEntries(keys.map((k) => [k, a[k]])) : null,
    ...(after ? { client_secret: 'replaced' } : {}),
  };
}

/** A claim's columns as the service reads them (`DomainClaim`). */
const claimColumns = [
  'domain',
  'verified_at',
  'proof_token',
  'proven_by',
  'proof_checked_at',
  'proof_missing_since',
] as const;

export function createSsoConfigService(deps: {
  db: Kysely<Database>;
  envelope: Envelope;
  allowInsecureIssuers: boolean;
  /** Where configuration changes are recorded, in the change's own transaction. */
  audit?: LifecycleAudit;
  /** How a tenant proves an email domain; by default a DNS TXT record, looked up by `resolveTxt`. */
  domainProof: DomainProof;
  /**
   * Told, once a change is committed, of the console admins it took off the list (a removal takes
   * them all): what they minted for others in the console goes with their role.
   */
  onAdminsRemoved?: (ctx: ActorContext, identifiers: readonly string[]) => Promise<void>;
}): SsoConfigService {
  const { db, envelope, domainProof } = deps;
  const audit = deps.audit ?? (async () => {});
  async function adminsRemoved(ctx: ActorContext, before: readonly string[], after: readonly string[]) {
    const removed = before.filter((admin) => !after.includes(admin));
    if (removed.length > 0) await deps.onAdminsRemoved?.(ctx, removed);
  }
  const claimsOf = (trx: Kysely<Database>, tenantId: string): Promise<DomainClaim[]> =>
    trx.selectFrom('tenant_sso_domains').select(claimColumns).where('tenant_id', '=', tenantId).execute();
  const claimOf = (
    trx: Kysely<Database>,
    tenantId: string,
    domain: string,
  ): Promise<DomainClaim | undefined> =>
    trx
      .selectFrom('tenant_sso_domains')
      .select(claimColumns)
      .where('tenant_id', '=', tenantId)
      .where('domain', '=', domain)
      .executeTakeFirst();
  async function getConfig(tenantId: string): Promise<SsoConfig | null> {
    const row = await db
      .selectFrom('tenant_sso_configs')
      .select(viewColumns)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return row ? configView(db, row) : null;
  }

  /** A configuration row as the tenant sees it, its domains' claims read with `executor`. */
  async function configView(executor: Kysely<Database>, row: ConfigRow): Promise<SsoConfig> {
    const claims = await claimsOf(executor, row.tenant_id);
    const unclaimed = row.allowed_email_domains.filter((d) => !claims.some((c) => c.domain === d));
    const held = await heldByOthers(executor, row.tenant_id, unclaimed, domainProof.mode);
    return toConfig(row, claims, domainProof, (domain) => held.some((h) => related(h, domain)));
  }

  /**
   * The tenant's claim of `domain` to prove, with a proof token: its own (given a token if it has
   * none: one an earlier release wrote), or where it has none (another organization's listing took
   * it, and counts no more), a new one if it lists the domain and nobody holds it. Under `none`
   * a new claim counts at once, recorded as a PUT's would be. Undefined when there is none to prove.
   */
  async function claimToProve(ctx: ActorContext, domain: string): Promise<DomainClaim | undefined> {
    const { tenantId } = ctx;
    const mode = domainProof.mode;
    // Mostly the claim is there with its token: nothing to write, no lock to take.
    const found = await claimOf(db, tenantId, domain);
    if (found && (found.proof_token || counts(found, mode))) return found;
    return db.transaction().execute(async (trx) => {
      await lockClaims(trx);
      const own = await claimOf(trx, tenantId, domain);
      if (own) {
        if (own.proof_token || counts(own, mode)) return own;
        const [tokened] = await trx
          .updateTable('tenant_sso_domains')
          .set({ proof_token: newProofToken() })
          .where('tenant_id', '=', tenantId)
          .where('domain', '=', domain)
          .where('proof_token', 'is', null)
          .returning(claimColumns)
          .execute();
        return tokened ?? own;
      }
      if ((await listingsOf(trx, domain, tenantId)).length === 0) return undefined;
      if ((await heldByOthers(trx, tenantId, [domain], mode)).length > 0) return undefined;
      const [claim] = await trx
        .insertInto('tenant_sso_domains')
        .values(newClaim(domain, tenantId, mode))
        .returning(claimColumns)
        .execute();
      if (claim && counts(claim, mode)) {
        await dropOthersClaimsNotRouting(trx, audit, tenantId, [domain], { mode, takenBy: 'listed' });
        await audit(trx, tenantId, [domainVerifiedRecord(ctx.actor, domain, 'none')]);
      }
      return claim;
    });
  }

  /**
   * The configurations that list `domain` (only the tenant's when `tenantId` is given), key-share
   * locked as a new claim's foreign key would lock them. Removals take the claims lock too; the row
   * lock also holds off a replica of an earlier release, whose removal does not.
   */
  const listingsOf = (trx: Kysely<Database>, domain: string, tenantId?: string) => {
    let query = trx
      .selectFrom('tenant_sso_configs')
      .select('tenant_id')
      .where(sql<boolean>`allowed_email_domains ? ${domain}::text`);
    if (tenantId !== undefined) query = query.where('tenant_id', '=', tenantId);
    return query.forKeyShare().execute();
  };
  const viewColumns = [
    'tenant_id',
    'issuer',
    'client_id',
    'identifier_claim',
    'allowed_email_domains',
    'console_admins',
    'created_at',
    'updated_at',
  ] as const;

  return {
    async put(ctx, raw) {
      const { tenantId } = ctx;
      const input = validateSsoConfigInput(raw, { allowInsecureIssuers: deps.allowInsecureIssuers });
      const sealed = await envelope.seal(identity(tenantId), Buffer.from(input.clientSecret, 'utf8'));
      const values = {
        issuer: input.issuer,
        client_id: input.clientId,
        identifier_claim: input.identifierClaim,
        allowed_email_domains: JSON.stringify(input.allowedEmailDomains),
        console_admins: JSON.stringify(input.consoleAdmins),
        ...sealedColumns(sealed),
      };
      const domains = input.allowedEmailDomains;
      if (domainProof.mode === 'dns') {
        const unprovable = domains.find((d) => !provableByDns(d));
        if (unprovable !== undefined) throw tooLongToProve('allowed_email_domains', unprovable);
      }
      const changed = await db.transaction().execute(async (trx) => {
        await lockClaims(trx);
        const previous = await trx
          .selectFrom('tenant_sso_configs')
          .select(viewColumns)
          .where('tenant_id', '=', tenantId)
          .forUpdate()
          .executeTakeFirst();
        // A domain another tenant holds stays theirs (claims are serialized by the lock above, so
        // two tenants cannot take a domain and its subdomain at once); the whole change is then
        // refused, nothing written.
        const taken = await heldByOthers(trx, tenantId, domains, domainProof.mode);
        if (taken.length > 0) throw heldConflict(taken);
        const row = await trx
          .insertInto('tenant_sso_configs')
          .values({ tenant_id: tenantId, id: `sso:${tenantId}`, ...values })
          .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ ...values, updated_at: new Date() }))
          .returning(viewColumns)
          .executeTakeFirstOrThrow();
        await trx
          .deleteFrom('tenant_sso_domains')
          .where('tenant_id', '=', tenantId)
          .where('domain', 'not in', domains)
          .execute();
        // A claim the tenant already has keeps its proof (and its token); a new one is proven at
        // once only where the deployment asks no proof.
        const inserted = await trx
          .insertInto('tenant_sso_domains')
          .values(domains.map((domain) => newClaim(domain, tenantId, domainProof.mode)))
          .onConflict((oc) => oc.columns(['domain', 'tenant_id']).doNothing())
          .returning('domain')
          .execute();
        const routing: string[] = [];
        if (domainProof.mode === 'none') {
          // Claims left pending while the deployment asked for proof count now (nobody holds them: see above).
          const proven = await trx
            .updateTable('tenant_sso_domains')
            .set({ verified_at: new Date(), proven_by: 'listing' })
            .where('tenant_id', '=', tenantId)
            .where('verified_at', 'is', null)
            .returning('domain')
            .execute();
          routing.push(...inserted.map((c) => c.domain), ...proven.map((c) => c.domain));
        }
        await dropOthersClaimsNotRouting(trx, audit, tenantId, routing, { mode: 'none', takenBy: 'listed' });
        const config = await configView(trx, row);
        await audit(trx, tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            {
              action: previous ? 'sso.changed' : 'sso.configured',
              details: ssoChangeDetails(previous ?? null, row),
            },
          ),
          // Every domain that starts routing has its record, whichever way it was proven.
          ...routing.sort().map((domain) => domainVerifiedRecord(ctx.actor, domain, 'none')),
        ]);
        return { config, before: previous?.console_admins ?? [] };
      });
      await adminsRemoved(ctx, changed.before, changed.config.consoleAdmins);
      return changed.config;
    },
    get: getConfig,
    async open(tenantId) {
      const row = await db
        .selectFrom('tenant_sso_configs')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      if (!row) throw notFound('SSO configuration');
      const sealed = sealedFromColumns(row);
      if (!sealed) throw new WardenError('integrity_failure', 'the sealed SSO client secret is missing');
      const secret = await envelope.open(identity(tenantId), sealed);
      return {
        config: await configView(db, row),
        clientSecret: secret.toString('utf8'),
      };
    },
    async remove(ctx) {
      const { tenantId } = ctx;
      const removed = await db.transaction().execute(async (trx) => {
        // Its claims go with it: serialized with every other change of claims.
        await lockClaims(trx);
        const removed = await trx
          .deleteFrom('tenant_sso_configs')
          .where('tenant_id', '=', tenantId)
          .returning(viewColumns)
          .executeTakeFirst();
        if (!removed) throw notFound('SSO configuration');
        await audit(trx, tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            { action: 'sso.removed', details: ssoChangeDetails(removed, null) },
          ),
        ]);
        return removed;
      });
      await adminsRemoved(ctx, removed.console_admins, []);
    },
    async verifyDomain(ctx, raw) {
      const { tenantId } = ctx;
      const domain = normalizeDomain(raw, 'domain');
      const recheck = recheckOf(domainProof);
      // A claim of one made before suffixes were refused is never proven.
      if (isPublicSuffix(domain)) throw publicSuffixRefusal('domain', domain);
      const claim = await claimToProve(ctx, domain);
      const notListed = () =>
        new WardenError(
          'not_found',
          `domain: ${domain} is not one of your SSO configuration's allowed_email_domains (or another organization proved it first); list it with PUT /api/v1/mcp/sso`,
          { field: 'domain' },
        );
      if (!claim) throw notListed();
      // One that routes already (with a token or, made before proofs existed, without) needs no proof.
      if (!counts(claim, domainProof.mode)) {
        if (!claim.proof_token) throw notListed();
        // A name DNS cannot hold (EBADNAME) is not a resolver in trouble: no retry will help.
        if (!provableByDns(domain)) throw tooLongToProve('domain', domain);
        const record = domainProofRecord(domain, claim.proof_token);
        if ((await lookUpProof(domainProof, domain, claim.proof_token)) === 'missing') {
          throw invalidRequest(
            'domain',
            `no TXT record "${record.value}" at ${record.name} yet: publish it at your DNS provider and retry (new records can take minutes to show)`,
          );
        }
        const proofToken = claim.proof_token;
        const mode = domainProof.mode;
        await db.transaction().execute(async (trx) => {
          await lockClaims(trx);
          const taken = await heldByOthers(trx, tenantId, [domain], mode);
          if (taken.length > 0) throw heldConflict(taken);
          // Locked: removing the configuration meanwhile (its claims go with it) waits for this.
          const waiting = await trx
            .selectFrom('tenant_sso_domains')
            .select('domain')
            .where('tenant_id', '=', tenantId)
            .where('domain', '=', domain)
            .where('proof_token', '=', proofToken)
            .where((eb) => routesNot(eb, mode))
            .forUpdate()
            .executeTakeFirst();
          // Removed from the list (or proven) meanwhile: nothing to do but report where it stands.
          if (!waiting) return;
          // Others' claims that do not route go first: under dns, one of the domain itself that
          // routed by listing alone would otherwise still hold the domain's one proven place.
          await dropOthersClaimsNotRouting(trx, audit, tenantId, [domain], { mode, takenBy: 'proven' });
          // The row locked above: nothing else changed it meanwhile.
          await trx
            .updateTable('tenant_sso_domains')
            .set({
              verified_at: new Date(),
              proven_by: 'dns',
              proof_checked_at: sql`now()`,
              proof_missing_since: null,
            })
            .where('tenant_id', '=', tenantId)
            .where('domain', '=', domain)
            .where('proof_token', '=', proofToken)
            .execute();
          await audit(trx, tenantId, [domainVerifiedRecord(ctx.actor, domain, 'dns')]);
        });
      } else if (recheck && claim.proof_missing_since && claim.proof_token) {
        // Verified, but a re-check found its record missing: looked up now, so a record put
        // back ends the grace at once, and one still missing is said so with the lapse time.
        const token = claim.proof_token;
        const result = await lookUpProof(domainProof, domain, token);
        const { applied, lapsesAt } = await db
          .transaction()
          .execute((trx) =>
            applyLookUp(
              trx,
              audit,
              { tenantId, domain, proofToken: token, checkedAt: claim.proof_checked_at },
              result,
              { recheck, actor: ctx.actor },
            ),
          );
        if (result === 'missing' && applied !== 'gone') {
          const record = domainProofRecord(domain, token);
          throw invalidRequest(
            'domain',
            applied === 'lapsed'
              ? `no TXT record "${record.value}" at ${record.name}, missing for too long: ${domain} is pending again; publish the record and verify it to prove it again`
              : `no TXT record "${record.value}" at ${record.name}: publish it again, or ${domain} stops routing at ${lapsesAt?.toISOString() ?? 'the end of its grace'}`,
          );
        }
      }
      const config = await getConfig(tenantId);
      if (!config) throw notFound('SSO configuration');
      return config;
    },
    async releaseDomain(actor, raw) {
      const domain = normalizeDomain(raw, 'domain');
      return db.transaction().execute(async (trx) => {
        await lockClaims(trx);
        const released = await trx
          .deleteFrom('tenant_sso_domains')
          .where('domain', '=', domain)
          .returning(['tenant_id', 'verified_at', 'proven_by'])
          .execute();
        if (released.length === 0) throw notFound(`a claim of ${domain}`);
        if (domainProof.mode === 'dns') {
          const listing = await listingsOf(trx, domain);
          if (listing.length > 0) {
            await trx
              .insertInto('tenant_sso_domains')
              .values(listing.map((row) => newClaim(domain, row.tenant_id, 'dns')))
              .execute();
          }
        }
        for (const claim of released) {
          await audit(trx, claim.tenant_id, [
            lifecycleRecord(
              { caller: actor },
              {
                action: 'sso.domain_released',
                details: { domain, was: counts(claim, domainProof.mode) ? 'verified' : 'pending' },
              },
            ),
          ]);
        }
        return { domain, releasedFrom: released.map((c) => c.tenant_id).sort() };
      });
    },
    async tenantForDomain(domain) {
      const normalized = domain.trim().toLowerCase();
      if (!DOMAIN.test(normalized)) {
        throw new WardenError('invalid_request', 'email: enter your work email address', { field: 'email' });
      }
      const row = await db
        .selectFrom('tenants')
        .select(['id as tenantId', 'name as tenantName'])
        .where('id', 'in', (qb) =>
          qb
            .selectFrom('tenant_sso_domains')
            .select('tenant_id')
            .where('domain', '=', normalized)
            .where((eb) => routes(eb, domainProof.mode)),
        )
        .executeTakeFirst();
      return row ?? null;
    },
  };
}
