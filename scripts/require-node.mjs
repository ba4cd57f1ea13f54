// Imported first by every JavaScript entry point (`npx warden`, the .mjs shims): the code is
// TypeScript run natively by Node 24, and on another Node it would fail with a stack trace or
// a missing-extension error. Plain JavaScript, so that any Node can read this far.
const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major !== REQUIRED_MAJOR) {
  process.stderr.write(
    `warden: Node.js ${REQUIRED_MAJOR} is required, this is Node.js ${process.version} (${process.execPath}); ` +
      `run it through npm (\`npm start\`, \`npm run warden -- …\`, which fetch Node.js ${REQUIRED_MAJOR} into .cache/node${REQUIRED_MAJOR}) ` +
      `or put Node.js ${REQUIRED_MAJOR} first on PATH\n`,
  );
  process.exit(1);
}
