/**
 * Module boundaries, checked in CI (`npm run lint`):
 *   services -> libs/tools -> other libs -> libs/core; no cycles anywhere;
 *   libs never import fastify or the service; libs/core depends on nothing;
 *   libs/testing is for tests, benchmarks and local fakes only;
 *   migrations never import application code.
 */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'libs-not-fastify',
      comment: 'Libraries never import fastify.',
      severity: 'error',
      from: { path: '^libs/' },
      to: { path: 'node_modules/(fastify|@fastify)/' },
    },
    {
      name: 'libs-not-services',
      severity: 'error',
      from: { path: '^libs/' },
      to: { path: '^services/' },
    },
    {
      name: 'core-is-a-leaf',
      comment: 'libs/core has no dependencies on other libs or packages.',
      severity: 'error',
      from: { path: '^libs/core/' },
      to: { path: '^(libs/(?!core/)|node_modules/)' },
    },
    {
      name: 'only-tools-and-services-use-tools',
      severity: 'error',
      from: { path: '^libs/(?!tools/)' },
      to: { path: '^libs/tools/' },
    },
    {
      name: 'testing-only-in-tests',
      comment: 'The fakes in libs/testing never ship in the production import graph.',
      severity: 'error',
      from: { path: '^(libs/(?!testing/)|services/)', pathNot: '(\\.test\\.ts$|/test-support/)' },
      to: { path: '^libs/testing/' },
    },
    {
      name: 'migrations-are-self-contained',
      severity: 'error',
      // Their tests (migrations/tests) may use the test database helpers, and nothing else.
      from: { path: '^migrations/', pathNot: '^migrations/tests/' },
      to: { path: '^(libs|services)/' },
    },
    {
      name: 'migration-tests-use-only-test-helpers',
      severity: 'error',
      from: { path: '^migrations/tests/' },
      to: { path: '^(libs|services)/', pathNot: '^libs/testing/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['@warden/source', 'import', 'require', 'node', 'default', 'types'],
    },
    exclude: { path: '(node_modules|\\.nx|\\.warden|/dist/)' },
  },
};
