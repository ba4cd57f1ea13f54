import type { TestApp } from './test-app.ts';

/** The app's one sealed credential row as a backup would hold it (taken before a key rotation). */
export function backUpSealedRow(t: TestApp) {
  return t.db.db.kysely.selectFrom('sealed_credentials').selectAll().executeTakeFirstOrThrow();
}

/** Puts a backed-up row back as it was, behind the service's back (a restored backup). */
export async function restoreSealedRow(t: TestApp, backup: Awaited<ReturnType<typeof backUpSealedRow>>) {
  await t.db.db.kysely
    .updateTable('sealed_credentials')
    .set({
      key_id: backup.key_id,
      wrapped_key: backup.wrapped_key,
      iv: backup.iv,
      ciphertext: backup.ciphertext,
    })
    .where('connected_account_id', '=', backup.connected_account_id)
    .execute();
}
