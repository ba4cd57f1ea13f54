import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { createWardenClient, runAgentLoop } from '@warden/sdk';
import type { AgentToolExecution } from '@warden/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectFakeUser } from './test-support/fake-user.ts';
import { freePort } from './test-support/free-port.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/** The README's instructions, run as written against the real service and tools. */

const README = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
/** Node 24 first, as for the service: npm runs scripts with the `node` it finds. */
const PATH = `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}`;

/** The first fenced block of `lang` after `heading`. */
function blockAfter(heading: string, lang: string): string {
  const at = README.indexOf(heading);
  expect(at, heading).toBeGreaterThanOrEqual(0);
  const start = README.indexOf(`\`\`\`${lang}\n`, at);
  const end = README.indexOf('\n```', start + 1);
  return README.slice(start + lang.length + 4, end);
}

function run(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function section(heading: string): string {
  const at = README.indexOf(heading);
  expect(at, heading).toBeGreaterThanOrEqual(0);
  const next = README.indexOf('\n#', at + heading.length);
  return README.slice(at, next === -1 ? undefined : next);
}

describe('README', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let port: number;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as { port: number }).port;
  }, 120_000);
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  it('quick start: creating the first tenant leaves a working WARDEN_API_KEY in the shell', async () => {
    const block = blockAfter('### A first tenant and connected account', 'sh');
    const lines = block.split('\n');
    // The service is already running here, started with this admin token.
    expect(lines).toContain('export WARDEN_ADMIN_TOKEN=$(openssl rand -hex 32)');
    expect(lines).toContain('npm start &');
    const script = lines
      .filter((l) => !l.startsWith('export WARDEN_ADMIN_TOKEN=') && l !== 'npm start &')
      .join('\n')
      .replaceAll('localhost:8080', `127.0.0.1:${port}`);
    // Asynchronously: the service answering the script runs in this process.
    const result = await run(
      'bash',
      [
        '--norc',
        '--noprofile',
        '-euo',
        'pipefail',
        '-c',
        `${script}\nprintf '\\nWARDEN_API_KEY=%s\\n' "$WARDEN_API_KEY"`,
      ],
      {
        PATH,
        WARDEN_ADMIN_TOKEN: t.adminToken,
      },
    );
    expect(result.status, result.stderr).toBe(0);
    const apiKey = /^WARDEN_API_KEY=(wdn_sk_\S+)$/m.exec(result.stdout)?.[1];
    expect(apiKey, result.stdout).toBeDefined();
    t.secrets.add(apiKey as string);
    const settings = await fetch(`http://127.0.0.1:${port}/api/v1/settings`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(settings.status).toBe(200);
  });

  it('the agent-loop example reports an unknown tool as an error, not as ok', async () => {
    const { apiKey } = await t.createTenant('Agent loop');
    await connectFakeUser(t, cf, apiKey, 'loop@acme.com');

    const callback = /^ {2}onToolResult: (\(e\) => .+),$/m.exec(section('## SDK and agent loop'))?.[1];
    expect(callback, 'onToolResult in the README example').toBeDefined();
    const printed: string[] = [];
    const readmeCallback = new Function('console', `return ${callback}`)({
      error: (...args: unknown[]) => printed.push(args.map(String).join(' ')),
    }) as (e: AgentToolExecution) => void;

    let turn = 0;
    await runAgentLoop({
      client: createWardenClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey }),
      identifier: 'loop@acme.com',
      input: 'go',
      model: async () =>
        turn++ === 0
          ? {
              type: 'tool_calls',
              toolCalls: [
                { id: 'a', name: 'cloudflare_serch', arguments: '{}' },
                { id: 'b', name: 'cloudflare_search', arguments: { code: 'async () => 1' } },
              ],
            }
          : { type: 'text', text: 'done' },
      onToolResult: readmeCallback,
    });
    expect(printed).toHaveLength(2);
    expect(printed[0]).toMatch(/^→ cloudflare_serch \{"error":\{"code":"unknown_tool"/);
    expect(printed[1]).toBe('→ cloudflare_search ok');
  });

  it('lists every CLI command', () => {
    const help = spawnSync(process.execPath, ['services/connector/src/cli.ts', '--help'], {
      cwd: REPO_ROOT,
      env: { PATH },
      encoding: 'utf8',
    });
    expect(help.status).toBe(0);
    const commands = [...help.stdout.matchAll(/^ {2}([a-z-]+ [a-z]+)/gm)].map((m) => m[1] as string);
    expect(commands.length).toBeGreaterThanOrEqual(10);
    const cli = section('### CLI');
    for (const command of commands) expect(cli, command).toContain(`\`${command}`);
  });

  it('`npm run bench -- --help` exits 0 with the usage of every suite', () => {
    const result = spawnSync('npm', ['run', '--silent', 'bench', '--', '--help'], {
      cwd: REPO_ROOT,
      env: { PATH, HOME: process.env.HOME ?? '/tmp' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status, result.stderr).toBe(0);
    for (const suite of ['audit', 'codemode', 'execute', 'vault']) {
      expect(result.stdout).toContain(`npm run bench -- ${suite}`);
    }
    expect(README).toContain('`npm run bench -- --help`');
  });

  it('the fake Cloudflare API listens on FAKE_CF_PORT, whatever Warden’s PORT says', async () => {
    expect(README).toContain('`FAKE_CF_PORT`, default 8787');
    const fakePort = await freePort();
    const child = spawn(process.execPath, ['libs/testing/src/fake-cloudflare.main.ts'], {
      cwd: REPO_ROOT,
      env: { PATH, PORT: String(port), FAKE_CF_PORT: String(fakePort), FAKE_CF_SPEC_PATH: SPEC_PATH },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const listening = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const line = /listening on (\S+)/.exec(out)?.[1];
          if (line) resolve(line);
        });
        child.on('exit', (code) => reject(new Error(`fake exited with ${code}: ${out}`)));
      });
      expect(listening).toBe(`http://127.0.0.1:${fakePort}/client/v4`);
      const verify = await fetch(`${listening}/user/tokens/verify`);
      expect(((await verify.json()) as { success: boolean }).success).toBe(false);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
