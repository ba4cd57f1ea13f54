export { MIGRATIONS_FOLDER, createTestDatabase } from './test-db.ts';
export type { TestDatabase } from './test-db.ts';
