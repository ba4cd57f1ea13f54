import type { Logger } from '@warden/core';
import { WardenError, isWardenError, unavailable } from '@warden/core';
import type { CloudflareClient, CloudflareCredential, CloudflareRequest } from '@warden/cloudflare';
import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { ColumnType, Kysely } from 'kysely';
import {
  UNRECORDABLE,
  UNRECORDABLE_MARKER,
  credentialSecretsRevealed,
  mintedCredential,
  revocationBody,
  withholdCredentialSecrets,
} from './credential-guard.ts';
import type {
  CredentialKind,
  CredentialOperation,
  CredentialOperationsPolicy,
  MintedCredentialRef,
} from './credential-guard.ts';

/** Declared beside its only store rather than in the shared schema type. */
interface MintedCredentialsTable {
  id: ColumnType<string, never, never>;
  tenant_id: string;
  identifier: string;
  connected_account_id: string;
  execution_id: string | null;
  kind: string;
  upstream_id: string;
  revoke_method: ColumnType<string, string | undefined, never>;
  revoke_path: string;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  revoked_at: ColumnType<Date | null, never, Date>;
  last_error: ColumnType<string | null, never, string | null>;
}

export interface MintedCredential extends MintedCredentialRef {
  readonly id: string;
  readonly identifier: string;
  readonly connectedAccountId: string;
  readonly executionId: string | null;
  readonly createdAt: Date;
}

export interface MintedCredentialStore {
  record(
    tenantId: string,
    entry: MintedCredentialRef & {
      readonly identifier: string;
      readonly connectedAccountId: string;
      readonly executionId: string | null;
    },
  ): Promise<boolean>;
  /** Not yet revoked, oldest first. */
  live(tenantId: string, connectedAccountId: string): Promise<MintedCredential[]>;
  /**
   * Records, whatever the account's state, a credential that could not be revoked at once (its
   * undo failed), with the reason, so offboarding reports it and tries again.
   */
  recordUnrevoked(
    tenantId: string,
    entry: MintedCredentialRef & {
      readonly identifier: string;
      readonly connectedAccountId: string;
      readonly executionId: string | null;
    },
    error: string,
  ): Promise<void>;
  markRevoked(tenantId: string, id: string): Promise<void>;
  markFailed(tenantId: string, id: string, error: string): Promise<void>;
}

export function createMintedCredentialStore(deps: { db: Kysely<Database> }): MintedCredentialStore {
  const db = deps.db.withTables<{ minted_credentials: MintedCredentialsTable }>();
  return {
    async record(tenantId, entry) {
      // Only while the account is not revoked, its row locked against the revocation meanwhile:
      // either offboarding's later read of the live credentials sees this row, or this sees the
      // revocation and records nothing (the caller then revokes the credential at once).
      const { rows } = await sql<{ id: string }>`
        insert into minted_credentials
          (tenant_id, identifier, connected_account_id, execution_id, kind, upstream_id, revoke_method, revoke_path)
        select ${tenantId}, ${entry.identifier}, ${entry.connectedAccountId}, ${entry.executionId},
               ${entry.kind}, ${entry.upstreamId}, ${entry.revokeMethod}, ${entry.revokePath}
        where exists (
          select 1 from connected_accounts
          where tenant_id = ${tenantId} and id = ${entry.connectedAccountId} and status <> 'REVOKED'
          for share)
        returning id`.execute(db);
      return rows.length > 0;
    },
    async live(tenantId, connectedAccountId) {
      const rows = await db
        .selectFrom('minted_credentials')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .where('connected_account_id', '=', connectedAccountId)
        .where('revoked_at', 'is', null)
        .orderBy('id')
        .execute();
      return rows.map((row) => ({
        id: String(row.id),
        kind: row.kind as CredentialKind,
        upstreamId: row.upstream_id,
        revokeMethod: row.revoke_method as MintedCredentialRef['revokeMethod'],
        revokePath: row.revoke_path,
        identifier: row.identifier,
        connectedAccountId: row.connected_account_id,
        executionId: row.execution_id,
        createdAt: row.created_at,
      }));
    },
    async recordUnrevoked(tenantId, entry, error) {
      await sql`
        insert into minted_credentials
          (tenant_id, identifier, connected_account_id, execution_id, kind, upstream_id, revoke_method, revoke_path, last_error)
        values (${tenantId}, ${entry.identifier}, ${entry.connectedAccountId}, ${entry.executionId},
                ${entry.kind}, ${entry.upstreamId}, ${entry.revokeMethod}, ${entry.revokePath}, ${error.slice(0, 500)})`.execute(
        db,
      );
    },
    async markRevoked(tenantId, id) {
      await db
        .updateTable('minted_credentials')
        .set({ revoked_at: new Date(), last_error: null })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .execute();
    },
    async markFailed(tenantId, id, error) {
      await db
        .updateTable('minted_credentials')
        .set({ last_error: error.slice(0, 500) })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .execute();
    },
  };
}

export interface MintedRevocation {
  readonly credential: MintedCredential;
  readonly revoked: boolean;
  readonly detail: string;
  /** The revoking request's answer, when one reached Cloudflare. */
  readonly status: number | null;
  readonly cfRay: string | null;
}

/**
 * Revokes at Cloudflare every live credential an account created through Warden, with
 * that account's own credential (so before the account's token is itself deleted). A 404
 * means it is already gone. Failures are kept on the row and reported, never thrown.
 */
export async function revokeMintedCredentials(
  deps: { readonly store: MintedCredentialStore; readonly cloudflare: CloudflareClient },
  tenantId: string,
  connectedAccountId: string,
  credential: CloudflareCredential,
): Promise<MintedRevocation[]> {
  const attempts: MintedRevocation[] = [];
  for (const minted of await deps.store.live(tenantId, connectedAccountId)) {
    let attempt: MintedRevocation;
    try {
      const response = await deps.cloudflare.send(credential, revocationRequest(minted));
      const gone = response.success || response.status === 404;
      const reason = response.errors.map((e) => e.message).join('; ') || `HTTP ${response.status}`;
      attempt = {
        credential: minted,
        revoked: gone,
        detail: gone
          ? `Cloudflare revoked ${minted.kind} ${minted.upstreamId}${minted.revokeMethod === 'DELETE' ? '' : ' (its secret replaced again)'}`
          : `Cloudflare refused to revoke ${minted.kind} ${minted.upstreamId}: ${reason}`,
        status: response.status,
        cfRay: response.cfRay,
      };
    } catch (error) {
      attempt = {
        credential: minted,
        revoked: false,
        detail: isWardenError(error) ? error.message : 'Cloudflare could not be reached',
        status: null,
        cfRay: null,
      };
    }
    if (attempt.revoked) await deps.store.markRevoked(tenantId, minted.id);
    else await deps.store.markFailed(tenantId, minted.id, attempt.detail);
    attempts.push(attempt);
  }
  return attempts;
}

/**
 * What an allowed credential operation returns to the agent: whatever it created is
 * recorded first (if that fails, it is revoked at once and the call fails with 503, so
 * nothing unrecorded outlives offboarding), then its secrets are withheld unless the tenant
 * policy reveals them.
 */
export async function guardCredentialResponse<
  T extends { readonly success: boolean; readonly result?: unknown },
>(
  deps: {
    readonly store: MintedCredentialStore;
    readonly cloudflare: CloudflareClient;
    readonly logger: Logger;
  },
  context: {
    readonly tenantId: string;
    readonly identifier: string;
    readonly connectedAccountId: string;
    readonly executionId: string | null;
    readonly credential: CloudflareCredential;
    readonly policy: CredentialOperationsPolicy | undefined;
  },
  operation: CredentialOperation,
  request: Parameters<typeof mintedCredential>[1],
  response: T,
): Promise<T> {
  const revealed = credentialSecretsRevealed(context.policy, operation.kind);
  const minted = mintedCredential(operation, request, response, revealed);
  if (minted === UNRECORDABLE) {
    // Offboarding could not revoke it: the agent does not get its secrets, revealed or not.
    deps.logger.warn(
      { kind: operation.kind },
      'a credential was made that cannot be recorded for revocation; its secrets are withheld',
    );
    return withholdCredentialSecrets(response, operation, UNRECORDABLE_MARKER).response;
  }
  if (minted) {
    const entry = {
      ...minted,
      identifier: context.identifier,
      connectedAccountId: context.connectedAccountId,
      executionId: context.executionId,
    };
    let recorded: boolean;
    try {
      recorded = await deps.store.record(context.tenantId, entry);
    } catch (error) {
      const undo = await undoMinted(deps.cloudflare, context.credential, minted);
      deps.logger.error(
        { err: error, kind: minted.kind, upstream_id: minted.upstreamId, undo },
        'a created credential could not be recorded',
      );
      throw unavailable('the database', error);
    }
    if (!recorded) {
      // The account was revoked (offboarded) while the request was out: what it made dies now,
      // or stays on the record for offboarding to report and try again.
      const undo = await undoMinted(deps.cloudflare, context.credential, minted);
      if (undo !== 'revoked') {
        await deps.store
          .recordUnrevoked(context.tenantId, entry, `created as its account was revoked; ${undo}`)
          .catch((error: unknown) =>
            deps.logger.error(
              { err: error, kind: minted.kind },
              'an unrevoked credential could not be recorded',
            ),
          );
      }
      deps.logger.warn(
        { kind: minted.kind, upstream_id: minted.upstreamId, undo },
        'a credential was created as its account was revoked (undo: see the undo field)',
      );
      throw new WardenError(
        'forbidden',
        'the connected account was revoked while this execution was running',
      );
    }
  }
  return revealed ? response : withholdCredentialSecrets(response, operation).response;
}

async function undoMinted(
  cloudflare: CloudflareClient,
  credential: CloudflareCredential,
  minted: MintedCredentialRef,
): Promise<string> {
  return cloudflare
    .send(credential, revocationRequest(minted))
    .then((r) => (r.success ? 'revoked' : `not revoked (HTTP ${r.status})`))
    .catch(() => 'not revoked (Cloudflare unreachable)');
}

/** The request that revokes `minted` (a DELETE, or its secret replaced once more). */
function revocationRequest(minted: MintedCredentialRef): CloudflareRequest {
  const body = revocationBody(minted);
  return { method: minted.revokeMethod, path: minted.revokePath, ...(body === undefined ? {} : { body }) };
}
