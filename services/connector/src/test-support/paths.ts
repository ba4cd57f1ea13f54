import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { specFixturePath } from '@warden/testing';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The Cloudflare OpenAPI document the project reads for tests; never copied into the repo. */
export const SPEC_PATH = specFixturePath();
/**
 * `NODE_OPTIONS` for a child process whose wall clock is off by `WARDEN_TEST_CLOCK_SKEW_MS`
 * (skewed-clock.preload.mjs).
 */
export const SKEWED_CLOCK_PRELOAD = `--import=${path.join(REPO_ROOT, 'services/connector/src/test-support/skewed-clock.preload.mjs')}`;
