/**
 * `npm run bench -- <suite> [--json]`: benchmarks are not tests. Each suite lives in
 * bench/<suite>.bench.ts and exports `run(args)` returning a flat JSON object of
 * figures; this runner prints it (as JSON with --json, else as a table).
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const suites = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.replace(/\.bench\.ts$/, ''))
  .sort();

/** Each suite's own synopsis: the `npm run bench -- …` line its header comment opens with. */
function usage(): string {
  const lines = suites.map((suite) => {
    const header = readFileSync(path.join(here, `${suite}.bench.ts`), 'utf8');
    const synopsis = /`npm run bench -- ([^`]+)`/.exec(header)?.[1]?.replace(/\s*\n\s*\*\s*/g, ' ');
    return `  npm run bench -- ${synopsis ?? `${suite} [--json]`}`;
  });
  return [
    `usage: npm run bench -- <${suites.join('|')}> [--json] [suite options]`,
    '',
    ...lines,
    '',
    'Figures print as a table, or as one JSON object with --json. Benchmarks are not tests.',
  ].join('\n');
}

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(`${usage()}\n`);
  process.exit(0);
}
const json = args.includes('--json');
const name = args.find((a) => !a.startsWith('--'));
if (!name || !suites.includes(name)) {
  process.stderr.write(`${name ? `unknown suite: ${name}\n\n` : ''}${usage()}\n`);
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
