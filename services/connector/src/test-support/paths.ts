import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The Cloudflare OpenAPI document the project reads for tests; never copied into the repo. */
export const SPEC_PATH = path.resolve(REPO_ROOT, '../shared/data/cloudflare-openapi.json');
