export {
  MIGRATIONS_FOLDER,
  createMigrationTestDatabase,
  createTestDatabase,
  testMigrator,
} from './test-db.ts';
export type { MigrationTestDatabase, TestDatabase } from './test-db.ts';
export { startFakeKms } from './fake-kms.ts';
export type { FakeKms, FakeKmsKeySpec } from './fake-kms.ts';
export { FAKE_CF_BASE_PATH, startFakeCloudflare } from './fake-cloudflare/fake-cloudflare.server.ts';
export type {
  FakeCloudflare,
  FakeCloudflareOptions,
  FakeRequestLogEntry,
  FakeRoutePermission,
  FakeTails,
} from './fake-cloudflare/fake-cloudflare.server.ts';
export { TAIL_PROTOCOL } from './fake-cloudflare/fake-tail-socket.ts';
export type {
  CreateAccountTokenOptions,
  CreateUserTokenOptions,
  FakeAccount,
  FakeClock,
  FakeCloudflareState,
  FakeDnsRecord,
  FakeKvNamespace,
  FakeToken,
  FakeTokenInfo,
  FakeTokenPolicy,
  FakeTokenStatus,
  FakeUser,
  FakeZone,
  FakeZoneStatus,
  TailSessionRecord,
} from './fake-cloudflare/fake-cloudflare.state.ts';
export type { FakeCloudflareFaults, FakeUnreachableMode } from './fake-cloudflare/fake-cloudflare.faults.ts';
export {
  DEFAULT_FAKE_BUDGET,
  DEFAULT_FAKE_GRAPHQL_BUDGET,
  DEFAULT_FAKE_IP_LIMIT,
  DEFAULT_FAKE_LOCKOUT_SECONDS,
} from './fake-cloudflare/fake-cloudflare.rate-limit.ts';
export type {
  FakeBudget,
  FakeLimits,
  LimitedBy,
  FakeWindowState,
} from './fake-cloudflare/fake-cloudflare.rate-limit.ts';
export type { FakePrincipalKind } from './fake-cloudflare/fake-cloudflare.access.ts';
export { FAKE_CF_PERMISSION_GROUPS } from './fake-cloudflare/fake-cloudflare.permissions.ts';
export { FAKE_CF_ALL_PERMISSIONS, seedDemo } from './fake-cloudflare/fake-cloudflare.seed.ts';
export type { FakeDemo } from './fake-cloudflare/fake-cloudflare.seed.ts';
export { startTcpProxy } from './tcp-proxy.ts';
export type { TcpProxy } from './tcp-proxy.ts';
export { specFixturePath } from './spec-fixture.ts';
export { recordQueries } from './query-recorder.ts';
export { sealInFirstFormat } from './first-seal-format.ts';
export { startFakeR2 } from './fake-r2.ts';
export type { FakeR2, FakeR2Object, FakeR2Options, FakeR2RequestLogEntry } from './fake-r2.ts';
export { startRedisServer } from './redis-server.ts';
export type { RedisServer } from './redis-server.ts';
export { freePort } from './free-port.ts';
export {
  NAMED_REFERENCES,
  hexOf,
  hexReference,
  jsEscape,
  percentEscape,
  secretDecodings,
  secretPieces,
  seededRandom,
  spellsSecret,
} from './secret-spellings.ts';
