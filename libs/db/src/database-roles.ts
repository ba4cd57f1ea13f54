import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * Least privilege for the audit trail. The service connects as an application role that may
 * read and append the trail (the parent table and every partition, present and future) but
 * never UPDATE, DELETE or TRUNCATE it; the trail's tables and the SECURITY DEFINER functions
 * that create and drop its partitions belong to a maintenance role nobody logs in as. The
 * application role keeps full use of every other table (the chain head needs UPDATE, the
 * outbox is a queue). Everything here is idempotent: run it again after each migration.
 */
export interface DatabaseRoles {
  /** The role the service logs in as (`LOGIN`, created without a password). */
  readonly appRole: string;
  /** Owns the trail and its maintenance functions (`NOLOGIN`). */
  readonly maintenanceRole: string;
}

export const DEFAULT_DATABASE_ROLES: DatabaseRoles = {
  appRole: 'warden_app',
  maintenanceRole: 'warden_maintenance',
};

/** The trail's functions that run with the maintenance role's rights. */
const DEFINER_FUNCTIONS = [
  'audit_partition_anchors(text)',
  'audit_create_partition(date)',
  'audit_rescue_default()',
  'audit_drop_partition(text)',
];

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function quoted(role: string, what: string): string {
  if (!ROLE_NAME.test(role)) {
    throw new Error(
      `${what} "${role}" is not a plain role name: use 1-63 of a-z, 0-9 and _, not starting with a digit`,
    );
  }
  return `"${role}"`;
}

/** The SQL, statement by statement (for `warden db roles --print` and for running it). */
export function databaseRoleStatements(roles: DatabaseRoles): string[] {
  const app = quoted(roles.appRole, 'the application role');
  const maint = quoted(roles.maintenanceRole, 'the maintenance role');
  if (app === maint) throw new Error('the application and maintenance roles must differ');
  // Each partition of the trail, including the default one, for a loop body `format(…, r.name)`.
  const eachPartition = (body: string) => `do $$
declare r record;
begin
  for r in select c.relname as name from pg_inherits i
           join pg_class c on c.oid = i.inhrelid
           join pg_class p on p.oid = i.inhparent
           where p.relname = 'audit_events' and p.relnamespace = current_schema()::regnamespace loop
    ${body}
  end loop;
end $$`;
  return [
    `do $$
begin
  if not exists (select from pg_roles where rolname = '${roles.maintenanceRole}') then
    create role ${maint} nologin;
  end if;
  if not exists (select from pg_roles where rolname = '${roles.appRole}') then
    create role ${app} login;
  end if;
end $$`,
    // Whoever runs the migrations acts as the maintenance role, to alter the trail's tables later.
    `grant ${maint} to current_user`,
    // The trail belongs to the maintenance role: only it, and the functions it owns, change it
    // (its functions create the partitions, in this schema).
    `grant usage, create on schema "SCHEMA" to ${maint}`,
    `alter table audit_events owner to ${maint}`,
    eachPartition(`execute format('alter table %I owner to %I', r.name, '${roles.maintenanceRole}');`),
    `alter table audit_chain_anchors owner to ${maint}`,
    ...DEFINER_FUNCTIONS.map((fn) => `alter function ${fn} owner to ${maint}`),
    ...DEFINER_FUNCTIONS.map((fn) => `revoke all on function ${fn} from public`),
    ...DEFINER_FUNCTIONS.map((fn) => `grant execute on function ${fn} to ${app}`),
    // Everything else the service uses in full; tables added by later migrations too.
    `grant usage on schema "SCHEMA" to ${app}`,
    `grant select, insert, update, delete on all tables in schema "SCHEMA" to ${app}`,
    `grant usage, select on all sequences in schema "SCHEMA" to ${app}`,
    `alter default privileges in schema "SCHEMA" grant select, insert, update, delete on tables to ${app}`,
    `alter default privileges in schema "SCHEMA" grant usage, select on sequences to ${app}`,
    // The trail: read and append only, on the parent, every partition, and every future partition
    // (created by the maintenance role's function).
    `revoke all on audit_events, audit_chain_anchors, audit_checkpoints, audit_chain_heads from ${app}`,
    `grant select, insert on audit_events to ${app}`,
    eachPartition(
      `execute format('revoke all on %I from %I', r.name, '${roles.appRole}');
    execute format('grant select, insert on %I to %I', r.name, '${roles.appRole}');`,
    ),
    `alter default privileges for role ${maint} in schema "SCHEMA" grant select, insert on tables to ${app}`,
    `grant select on audit_chain_anchors to ${app}`,
    `grant select, insert on audit_checkpoints to ${app}`,
    // Each append moves the chain head.
    `grant select, insert, update on audit_chain_heads to ${app}`,
    // Migrations are the operator's.
    `revoke insert, update, delete on kysely_migration, kysely_migration_lock from ${app}`,
  ];
}

/** Fills the schema name into the statements (the schema the migrations created the tables in). */
function inSchema(statement: string, schema: string): string {
  return statement.replaceAll('"SCHEMA"', `"${schema.replaceAll('"', '""')}"`);
}

/** The statements for this database, with its schema filled in. */
export async function databaseRoleScript<DB>(db: Kysely<DB>, roles: DatabaseRoles): Promise<string[]> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = rows[0]?.schema ?? 'public';
  return databaseRoleStatements(roles).map((s) => inSchema(s, schema));
}

/** Creates the roles if needed and applies the grants, in one transaction. */
export async function applyDatabaseRoles<DB>(db: Kysely<DB>, roles: DatabaseRoles): Promise<string[]> {
  const statements = await databaseRoleScript(db, roles);
  await db.transaction().execute(async (tx) => {
    for (const statement of statements) await sql.raw(statement).execute(tx);
  });
  return statements;
}
