import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * Dynamically registered OAuth clients expire unless a grant keeps them (the service sets the
 * expiry from now on). Clients registered before had none: each gets a day from now
 * (`OAUTH_UNUSED_CLIENT_TTL_SECONDS`' default) or its latest live grant's expiry, whichever is
 * later, and none while a live grant of it never expires.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    update oauth_artifacts c
    set expires_at = case
      when exists (
        select 1 from oauth_artifacts g
        where g.model = 'Grant' and g.client_id = c.id and g.expires_at is null
      ) then null
      else greatest(
        now() + interval '24 hours',
        (select max(g.expires_at) from oauth_artifacts g where g.model = 'Grant' and g.client_id = c.id)
      )
    end
    where c.model = 'Client' and c.expires_at is null
  `.execute(db);
}

export async function down(): Promise<void> {
  // Nothing to undo: the previous release honours every row's expiry too.
}
