/**
 * `npm run bench -- <suite> [--json]`: benchmarks are not tests. Each suite lives in
 * bench/<suite>.bench.ts and exports `run(args)` returning a flat JSON object of
 * figures; this runner prints it (as JSON with --json, else as a table).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const suites = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.replace(/\.bench\.ts$/, ''))
  .sort();

const args = process.argv.slice(2);
const json = args.includes('--json');
const name = args.find((a) => !a.startsWith('--'));
if (!name || !suites.includes(name)) {
  console.error(`usage: npm run bench -- <${suites.join('|')}> [--json]`);
  process.exit(2);
}
const suite = (await import(path.join(here, `${name}.bench.ts`))) as {
  run(args: string[]): Promise<Record<string, unknown>>;
};
const result = await suite.run(args.filter((a) => a !== name));
if (json) {
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} else {
  console.table(result);
}
process.exit(0);
