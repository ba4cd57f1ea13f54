import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Workspace packages that publish a build (libs/sdk) point this condition at their sources
  // (tests run in Vite's server-side environment, hence `ssr`).
  ssr: { resolve: { conditions: ['@warden/source'] } },
  test: {
    include: ['libs/**/*.test.ts', 'services/**/*.test.ts', 'migrations/**/*.test.ts'],
    globalSetup: ['./vitest.global-setup.ts'],
    // Integration tests start real servers, databases and child processes.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // isolated-vm (loaded by sandbox children and some tests) needs this flag on Node >= 20.
    execArgv: ['--no-node-snapshot'],
  },
});
