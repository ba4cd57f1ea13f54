import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const RELATIVE = path.join('shared', 'data', 'cloudflare-openapi.json');

/**
 * The Cloudflare OpenAPI document tests and benchmarks use. It is never copied into
 * the repository: it sits in `../shared/data` beside the checkout. A clone elsewhere
 * (CI in a temporary directory) finds it through `CLOUDFLARE_SPEC_FIXTURE`, an ancestor
 * directory holding `shared/data`, or the workspace's `/work/shared/data`.
 */
export function specFixturePath(): string {
  const candidates: string[] = [];
  if (process.env.CLOUDFLARE_SPEC_FIXTURE) candidates.push(path.resolve(process.env.CLOUDFLARE_SPEC_FIXTURE));
  for (let dir = REPO_ROOT; ; dir = path.dirname(dir)) {
    candidates.push(path.join(path.dirname(dir), RELATIVE));
    if (path.dirname(dir) === dir) break;
  }
  candidates.push(path.join('/work', RELATIVE));
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) {
    throw new Error(
      `the Cloudflare OpenAPI document was not found (looked in ${candidates.slice(0, 3).join(', ')}, ...); set CLOUDFLARE_SPEC_FIXTURE to its path`,
    );
  }
  return found;
}
