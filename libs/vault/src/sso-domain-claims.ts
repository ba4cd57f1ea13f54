/**
 * Email domain claims of SSO configurations: which organization a domain (with its subdomains)
 * routes engineers to, how a claim is proven (a DNS TXT record, or listed where the deployment
 * asks no proof), and the one-owner rule that keeps a domain, its parents and its subdomains with
 * one organization. The SSO configuration service (`sso-configs.service.ts`) writes claims
 * through these under its claims lock.
 */
import { randomBytes } from 'node:crypto';
import { WardenError, invalidRequest } from '@warden/core';
import { SYSTEM_CALLER, lifecycleRecord } from '@warden/audit';
import type { AuditCaller } from '@warden/audit';
import type { Database, SsoProvenBy } from '@warden/db';
import type { Expression, ExpressionBuilder, Kysely, SqlBool } from 'kysely';
import { sql } from 'kysely';
import { getPublicSuffix } from 'tldts';
import type { LifecycleAudit } from './lifecycle.ts';

/**
 * How a tenant shows it holds an email domain. `dns`: a TXT record at `_warden-challenge.<domain>`
 * carrying the claim's token; `none`: claims count at once, first come (single-organization
 * deployments, demos).
 */
export interface DomainProof {
  readonly mode: 'dns' | 'none';
  /** TXT lookup (`dns.promises.Resolver#resolveTxt`): each record as its character strings. */
  readonly resolveTxt: (name: string) => Promise<string[][]>;
  /**
   * How often a DNS-proven claim's record is looked up again, and how long it may stay missing
   * before the claim lapses to pending (`sso-domain-recheck.ts`); null: never re-checked. It
   * applies under `dns` only: read it through `recheckOf`.
   */
  readonly recheck: { readonly intervalMs: number; readonly lapseMs: number } | null;
}

/** The re-check of `proof`: only DNS proofs are re-checked (under `none` no claim waits for a record). */
export function recheckOf(proof: Pick<DomainProof, 'mode' | 'recheck'>): DomainProof['recheck'] {
  return proof.mode === 'dns' ? proof.recheck : null;
}

/** When a claim whose record went missing at `missingSince` lapses. */
export function lapseTime(missingSince: Date, recheck: NonNullable<DomainProof['recheck']>): Date {
  return new Date(missingSince.getTime() + recheck.lapseMs);
}

/** A claim's proof token: 18 random bytes, 24 characters of base64url. */
export function newProofToken(): string {
  return randomBytes(18).toString('base64url');
}

/** The TXT record a claim is proven by. */
export function domainProofRecord(domain: string, token: string): { name: string; value: string } {
  return { name: `_warden-challenge.${domain}`, value: `warden-domain-verification=${token}` };
}

/**
 * Looks the claim's TXT record up: `found` when a record at `_warden-challenge.<domain>` carries
 * the token, `missing` when the name does not exist, holds no TXT, or none with the token. A
 * resolver that does not answer (a timeout, SERVFAIL, a refusal) is not an answer: `unavailable`.
 */
export async function lookUpProof(
  proof: DomainProof,
  domain: string,
  token: string,
): Promise<'found' | 'missing'> {
  const record = domainProofRecord(domain, token);
  let found: string[][];
  try {
    found = await proof.resolveTxt(record.name);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // No such name, or no TXT there: the record is not published.
    if (code === 'ENOTFOUND' || code === 'ENODATA') return 'missing';
    throw new WardenError(
      'unavailable',
      `domain: DNS did not answer for ${record.name} (${String(code ?? 'error')}); retry`,
      {},
      { cause: error },
    );
  }
  return found.some((chunks) => chunks.join('') === record.value) ? 'found' : 'missing';
}

/** A domain name as claims hold it: lower case, labels of letters, digits and hyphens, a top-level label of letters. */
export const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/**
 * Whether `domain` is itself a public suffix of the Public Suffix List (`com`, `co.uk`, and the
 * private section's `github.io` or `herokuapp.com`): names under it are registered by different
 * owners, so claiming it would route them all to one organization (with `SSO_DOMAIN_PROOF=none`)
 * or block them all from proving their own domain (the one-owner rule covers names below).
 */
export function isPublicSuffix(domain: string): boolean {
  return getPublicSuffix(domain, { allowPrivateDomains: true }) === domain;
}

export function publicSuffixRefusal(field: string, suffix: string): WardenError {
  return invalidRequest(
    field,
    `"${suffix}" is a public suffix: the names under it belong to different owners, so no organization can hold it; list your own domain under it, e.g. "acme.${suffix}"`,
  );
}

/**
 * What counts as proven under the DNS proof: a DNS record, or a claim made first come before
 * Warden had proofs (kept routing). Anything else, `listing` or unrecorded, waits for its record.
 */
const PROVEN_UNDER_DNS: readonly SsoProvenBy[] = ['dns', 'before_proofs'];

export interface DomainClaim {
  readonly domain: string;
  readonly verified_at: Date | null;
  readonly proof_token: string | null;
  readonly proven_by: SsoProvenBy | null;
  readonly proof_checked_at: Date | null;
  readonly proof_missing_since: Date | null;
}

/**
 * Whether a claim routes under the deployment's proof mode: under `none` a proven one does;
 * under `dns` only one proven by its DNS record (or claimed before there were proofs). A claim
 * that counted only by being listed, or whose proof was not recorded (written by a release
 * before `proven_by`, during a rolling upgrade), is pending under `dns`, waiting for its DNS record like any other.
 */
export function counts(
  claim: Pick<DomainClaim, 'verified_at' | 'proven_by'>,
  mode: DomainProof['mode'],
): boolean {
  if (claim.verified_at === null) return false;
  return mode === 'none' || (claim.proven_by !== null && PROVEN_UNDER_DNS.includes(claim.proven_by));
}

/** The claims that route under `mode` (see `counts`), as a query condition. */
export function routes(
  eb: ExpressionBuilder<Database, 'tenant_sso_domains'>,
  mode: DomainProof['mode'],
): Expression<SqlBool> {
  const proven = eb('verified_at', 'is not', null);
  return mode === 'dns' ? eb.and([proven, eb('proven_by', 'in', PROVEN_UNDER_DNS)]) : proven;
}

/**
 * The claims that do not route under `mode`: exactly those `routes` leaves out. Not a bare
 * `not routes`, which SQL answers with NULL (neither) for a proven claim whose `proven_by` is
 * null: an unknown counts as not routing.
 */
export function routesNot(
  eb: ExpressionBuilder<Database, 'tenant_sso_domains'>,
  mode: DomainProof['mode'],
): Expression<SqlBool> {
  return eb.not(eb.fn.coalesce(routes(eb, mode), sql.lit(false)));
}

/**
 * The lock every change of claims takes, in its transaction: who holds a domain is decided by
 * one writer at a time across replicas.
 */
export async function lockClaims(trx: Kysely<Database>): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('warden:sso-domain-claims'))`.execute(trx);
}

/** `domains` and every name above them (`eng.acme.com` → `acme.com`), for the one-owner rule. */
function withParents(domains: readonly string[]): string[] {
  return domains.flatMap((d) => {
    const labels = d.split('.');
    return [d, ...labels.slice(1, -1).map((_, i) => labels.slice(i + 1).join('.'))];
  });
}

/**
 * Claims of `domains`, of names above them or of names below them: one organization holds a
 * domain and its subdomains (a subdomain routes its own engineers, bob@eng.acme.com).
 */
function atAboveOrBelow(
  eb: ExpressionBuilder<Database, 'tenant_sso_domains'>,
  domains: readonly string[],
): Expression<SqlBool> {
  return eb.or([
    eb('domain', 'in', withParents(domains)),
    ...domains.map((d) => eb('domain', 'like', `%.${d}`)),
  ]);
}

/** Domains another tenant holds (claims that route under `mode`) that are, are above or are below one of `domains`. */
export async function heldByOthers(
  trx: Kysely<Database>,
  tenantId: string,
  domains: readonly string[],
  mode: DomainProof['mode'],
): Promise<string[]> {
  if (domains.length === 0) return [];
  const rows = await trx
    .selectFrom('tenant_sso_domains')
    .select('domain')
    .where('tenant_id', '<>', tenantId)
    .where((eb) => routes(eb, mode))
    .where((eb) => atAboveOrBelow(eb, domains))
    .orderBy('domain')
    .execute();
  // A public suffix claimed before suffixes were refused holds nothing: it would keep every
  // organization under it (anything.co.uk) from listing its own domain.
  return rows.map((r) => r.domain).filter((domain) => !isPublicSuffix(domain));
}

/** A domain as the API names it (any case, spaces around), or a 400 naming `field`. */
export function normalizeDomain(raw: string, field: string): string {
  const domain = raw.trim().toLowerCase();
  if (!DOMAIN.test(domain)) throw invalidRequest(field, `"${raw}" is not a domain name such as "acme.com"`);
  return domain;
}

/**
 * A new claim: waiting for its DNS proof, or under `none` counting at once (with a token too, so
 * it can be proven if the deployment asks for proof later).
 */
export function newClaim(domain: string, tenantId: string, mode: DomainProof['mode']) {
  const proofToken = newProofToken();
  return mode === 'none'
    ? {
        domain,
        tenant_id: tenantId,
        verified_at: new Date(),
        proof_token: proofToken,
        proven_by: 'listing' as const,
      }
    : { domain, tenant_id: tenantId, verified_at: null, proof_token: proofToken, proven_by: null };
}

/** Whether the proof record's name (`_warden-challenge.<domain>`) fits in a DNS name (253 characters). */
export function provableByDns(domain: string): boolean {
  return domainProofRecord(domain, '').name.length <= 253;
}

export function tooLongToProve(field: string, domain: string): WardenError {
  return invalidRequest(
    field,
    `"${domain}" is too long to be proven by DNS: its record ${domainProofRecord(domain, '').name} would exceed 253 characters`,
  );
}

export function heldConflict(taken: readonly string[]): WardenError {
  const named = taken.map((t) => `"${t}"`).join(', ');
  return new WardenError(
    'conflict',
    `allowed_email_domains: ${named} already signs in to another organization here, and an email domain with its subdomains belongs to one organization only; remove the domains at or under it, or ask the operator if the domain is yours`,
    { field: 'allowed_email_domains' },
  );
}

/**
 * A domain starts routing (`sso.domain_verified`): proven by its DNS record (`dns`), or listed
 * where the deployment asks no proof (`none`).
 */
export function domainVerifiedRecord(actor: AuditCaller, domain: string, proof: DomainProof['mode']) {
  return lifecycleRecord({ caller: actor }, { action: 'sso.domain_verified', details: { domain, proof } });
}

/** Whether one of two domains is, is above or is below the other (the one-owner rule). */
export function related(a: string, b: string): boolean {
  return a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`);
}

/** How `domains` came to route for the organization that now holds them. */
export type TakenBy = 'proven' | 'listed';

/**
 * Once `domains` route for `tenantId`, other organizations' claims at, above or below them that do
 * not route under `mode` (pending ones, and under `dns` those proven only by listing) can never
 * count (one organization per domain and its subdomains): they go, shown as held elsewhere, and
 * each such organization learns it from its own trail (`sso.domain_lost`, by Warden: the other
 * tenant's actor stays out of it), the reason saying whether `domains` were proven or listed.
 */
export async function dropOthersClaimsNotRouting(
  trx: Kysely<Database>,
  audit: LifecycleAudit,
  tenantId: string,
  domains: readonly string[],
  options: { readonly mode: DomainProof['mode']; readonly takenBy: TakenBy },
): Promise<void> {
  if (domains.length === 0) return;
  const lost = await trx
    .deleteFrom('tenant_sso_domains')
    .where('tenant_id', '<>', tenantId)
    .where((eb) => routesNot(eb, options.mode))
    .where((eb) => atAboveOrBelow(eb, domains))
    .returning(['tenant_id', 'domain'])
    .execute();
  const lostBy = Map.groupBy(
    lost.sort((x, y) => x.domain.localeCompare(y.domain)),
    (claim) => claim.tenant_id,
  );
  for (const loser of [...lostBy.keys()].sort()) {
    await audit(
      trx,
      loser,
      (lostBy.get(loser) ?? []).map((claim) => domainLostRecord(claim.domain, domains, options.takenBy)),
    );
  }
}

/** A claim went because another organization's `domains` route now (`sso.domain_lost`). */
function domainLostRecord(domain: string, routing: readonly string[], takenBy: TakenBy) {
  return lifecycleRecord(
    { caller: SYSTEM_CALLER },
    {
      action: 'sso.domain_lost',
      details: {
        domain,
        reason: takenBy === 'proven' ? 'proven_by_another_organization' : 'listed_by_another_organization',
        proven: routing.find((d) => related(d, domain)) ?? null,
      },
    },
  );
}
