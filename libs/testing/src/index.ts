export { MIGRATIONS_FOLDER, createTestDatabase } from './test-db.ts';
export type { TestDatabase } from './test-db.ts';
export { startFakeKms } from './fake-kms.ts';
export type { FakeKms } from './fake-kms.ts';
