#!/usr/bin/env node
// Entry for `npx warden`: the CLI is TypeScript, run natively by Node >= 24.
import '../src/cli.ts';
