import { defineConfig } from 'vitest/config';

/**
 * Files whose assertions are about time on this machine (the 100 ms bound for a
 * pathological rule, budget efficiency and egress fairness across four replicas, blast radius
 * while another tenant's executions run, an MCP session closed within a second of offboarding,
 * the console's audit explorer opening in under 1 s). On
 * 2 cores, another test file's servers running beside them would measure the neighbour, not
 * Warden; they run in a group of their own, one file at a time, never beside another file.
 */
const ALONE = [
  'services/connector/src/budget.integration.test.ts',
  'services/connector/src/policy-guard.integration.test.ts',
  'services/connector/src/console/console.e2e.integration.test.ts',
  'services/connector/src/offboarding.integration.test.ts',
  'libs/codemode/src/blast-radius.test.ts',
  'libs/ratelimit/src/redis-egress.integration.test.ts',
];

export default defineConfig({
  // Workspace packages that publish a build (libs/sdk) point this condition at their sources
  // (tests run in Vite's server-side environment, hence `ssr`).
  ssr: { resolve: { conditions: ['@warden/source'] } },
  test: {
    globalSetup: ['./vitest.global-setup.ts'],
    // Integration tests start real servers, databases and child processes.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // isolated-vm (loaded by sandbox children and some tests) needs this flag on Node >= 20.
    execArgv: ['--no-node-snapshot'],
    projects: [
      {
        extends: true,
        test: {
          name: 'parallel',
          include: ['libs/**/*.test.ts', 'services/**/*.test.ts', 'migrations/**/*.test.ts'],
          exclude: ['**/node_modules/**', ...ALONE],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'alone',
          include: ALONE,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
