import { DataDirLockedError, assertDataDirUnlocked } from '@warden/db';
import type { Config } from './config.ts';

/** What a CLI command does through a running server's admin API instead, as a curl line. */
function adminApiEquivalent(command: string, args: readonly string[], publicUrl: string): string | null {
  const auth = `-H "authorization: Bearer $WARDEN_ADMIN_TOKEN"`;
  const json = `-H 'content-type: application/json'`;
  switch (command) {
    case 'tenants create':
      return `curl -s -X POST ${publicUrl}/admin/v1/tenants ${auth} ${json} -d '${JSON.stringify({ name: args.join(' ') })}'`;
    case 'tenants list':
      return `curl -s ${publicUrl}/admin/v1/tenants ${auth}`;
    case 'api-keys create':
      return `curl -s -X POST ${publicUrl}/admin/v1/tenants/${args[0] ?? 'TENANT_ID'}/api_keys ${auth}`;
    case 'api-keys revoke':
      return `curl -s -X DELETE ${publicUrl}/admin/v1/tenants/${args[0] ?? 'TENANT_ID'}/api_keys/${args[1] ?? 'KEY_ID'} ${auth}`;
    default:
      return null;
  }
}

/**
 * The CLI never opens the embedded database while another process holds it: what it wrote
 * there would be invisible to the running server and lost at its next start. Throws, before
 * anything is changed, an error saying what to do instead.
 */
export function refuseWhileEmbeddedDatabaseIsHeld(
  config: Config,
  command: string,
  args: readonly string[],
): void {
  if (config.database.kind !== 'pglite') return;
  try {
    assertDataDirUnlocked(config.database.dataDir);
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error;
    const { holder } = error;
    const server = !/\bcli\.ts\b|\bwarden\.js\b/.test(holder.command);
    const who = `${server ? 'the running Warden server' : 'another Warden command'} (pid ${holder.pid}, since ${holder.startedAt})`;
    const instead = server ? adminApiEquivalent(command, args, config.publicUrl) : null;
    throw new Error(
      `\`warden ${command}\` was not run: ${who} holds the embedded database in ${config.database.dataDir}, ` +
        'and nothing may be written where it cannot see it. ' +
        (instead
          ? `Use the server's admin API instead (WARDEN_ADMIN_TOKEN as the server has it):\n  ${instead}\nor stop the server and run the command again.`
          : `Stop ${server ? 'the server' : 'it'} and run the command again.`) +
        ' With PostgreSQL (DATABASE_URL) the CLI runs beside the server.',
      { cause: error },
    );
  }
}
