/**
 * `npm run sdk-methods:generate`: rewrites src/sdk/sdk-methods.generated.ts from the pinned
 * `cloudflare` package and the Cloudflare OpenAPI document the tests use (hence its place
 * here: only tests and their support may read that fixture). Run it after changing the
 * package's version and commit the result; a test fails while the committed table is stale.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { specFixturePath } from '@warden/testing';
import { generateSdkTable, sdkPackageDir } from '../sdk/sdk-methods.generator.ts';

const target = fileURLToPath(new URL('../sdk/sdk-methods.generated.ts', import.meta.url));
const table = generateSdkTable({ packageDir: sdkPackageDir(), specPath: specFixturePath() });
writeFileSync(target, table.source);
const missing = table.methods.filter((m) => !m.inSpec).length;
console.log(
  `${target}: ${table.methods.length} methods of cloudflare@${table.sdkVersion}, ${missing} not in the OpenAPI document`,
);
