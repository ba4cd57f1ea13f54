import { ensureConsoleBuilt, initialBundle } from './console-build.ts';

// `npm run build -w services/console [-- --force]`; scripts/bootstrap.sh runs it before `npm start`.
const result = await ensureConsoleBuilt({
  force: process.argv.includes('--force'),
  log: (line) => process.stderr.write(`warden: ${line}\n`),
});
if (result.built) {
  const size = initialBundle().gzipBytes;
  process.stderr.write(
    `warden: admin console built in ${result.ms} ms (first load ${(size / 1024).toFixed(1)} KB gzipped)\n`,
  );
}
