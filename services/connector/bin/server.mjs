// Entry for the service when started by hand or in a container (`npm start` is the usual way):
// the version check runs before the TypeScript service is loaded.
import '../../../scripts/require-node.mjs';

await import('../src/main.ts');
