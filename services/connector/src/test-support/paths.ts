import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { specFixturePath } from '@warden/testing';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The Cloudflare OpenAPI document the project reads for tests; never copied into the repo. */
export const SPEC_PATH = specFixturePath();
