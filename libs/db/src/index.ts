export { createDb } from './create-db.ts';
export { createDatabaseClock } from './database-clock.ts';
export type { DatabaseClock } from './database-clock.ts';
export { DataDirLockedError, acquireDataDirLock, assertDataDirUnlocked } from './data-dir-lock.ts';
export type { DataDirLock, DataDirLockHolder } from './data-dir-lock.ts';
export type { Db, DbOptions } from './create-db.ts';
export type { PreparedStatementOptions } from './prepared-statements.ts';
export { createMigrator, migrateToLatest } from './migrate.ts';
export type { MigrationReport } from './migrate.ts';
export {
  isDatabaseUnavailable,
  isDatabaseWriteRefused,
  isRetryableConflict,
  isUniqueViolation,
  withConflictRetry,
} from './errors.ts';
export { decodeCursor, encodeCursor } from './cursor.ts';
export type { PageCursor } from './cursor.ts';
export type {
  ApprovalStatus,
  AuditEventRow,
  AuthorizationType,
  CloudflareAccountRef,
  ConnectedAccountRow,
  ConnectedAccountStatus,
  ConnectedAccountUpdate,
  Connection,
  Database,
  McpTokenRow,
  NewConnectedAccountRow,
  NewSealedCredentialRow,
  OutboxStatus,
  SealedCredentialRow,
  SsoProvenBy,
  Tenant,
  TenantApiKey,
  TenantSettings,
  TokenKind,
} from './database.ts';
export {
  DEFAULT_DATABASE_ROLES,
  applyDatabaseRoles,
  databaseRoleScript,
  databaseRoleStatements,
} from './database-roles.ts';
export type { DatabaseRoles } from './database-roles.ts';
