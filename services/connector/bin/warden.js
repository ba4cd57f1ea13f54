#!/usr/bin/env node
// Entry for `npx warden`: the version check runs before the TypeScript CLI is loaded.
import '../../../scripts/require-node.mjs';

await import('../src/cli.ts');
