import { startFakeCloudflare } from './fake-cloudflare/fake-cloudflare.server.ts';
import { seedDemo } from './fake-cloudflare/fake-cloudflare.seed.ts';
import { startFakeR2 } from './fake-r2.ts';
import { specFixturePath } from './spec-fixture.ts';

function defaultSpec(): string | undefined {
  try {
    return specFixturePath();
  } catch {
    return undefined;
  }
}
const specPath = process.env.FAKE_CF_SPEC_PATH || defaultSpec();

// Variables of its own: PORT and HOST are Warden's, often set in the same shell or .env file.
const fake = await startFakeCloudflare({
  port: Number(process.env.FAKE_CF_PORT || 8787),
  host: process.env.FAKE_CF_HOST || '127.0.0.1',
  ...(specPath ? { specPath } : {}),
});
const demo = seedDemo(fake.state);
// R2's S3 endpoint beside it, signed with the same tokens (their id and the SHA-256 of their value).
// Default 8788; when that port is taken (and FAKE_R2_PORT is unset) any free one, printed below.
const r2 = await startFakeR2({ state: fake.state, port: Number(process.env.FAKE_R2_PORT || 8788) }).catch(
  (error: unknown) => {
    if (process.env.FAKE_R2_PORT) throw error;
    return startFakeR2({ state: fake.state });
  },
);
r2.createBucket(demo.account.id, 'demo-bucket');
r2.putObject(demo.account.id, 'demo-bucket', 'hello.txt', 'hello from the fake R2', {
  contentType: 'text/plain',
});
// What a tail of the demo Worker streams (tail.worker in execute), as Cloudflare's trace events.
fake.tails.script(
  demo.account.id,
  demo.workerName,
  [
    ['ok', 'GET', 'log', 'GET / served from the cache'],
    ['exception', 'POST', 'error', 'TypeError: cannot read properties of undefined'],
    ['ok', 'GET', 'log', 'GET /health ok'],
  ].map(([outcome, method, level, message], i) => ({
    outcome,
    scriptName: demo.workerName,
    exceptions: outcome === 'exception' ? [{ name: 'TypeError', message, timestamp: Date.now() }] : [],
    logs: [{ message: [message], level, timestamp: Date.now() }],
    eventTimestamp: Date.now(),
    event: { request: { url: `https://demo.example.com/${i}`, method, headers: {} } },
  })),
);

// A local fake: printing its demo credentials is the point.
console.log(`fake Cloudflare API listening on ${fake.url}`);
console.log(`permissions: ${specPath ? `from ${specPath}` : 'built-in table (no OpenAPI document found)'}`);
console.log(`CLOUDFLARE_API_BASE=${fake.url}`);
console.log(`user          ${demo.user.email} (id ${demo.user.id})`);
console.log(`global key    ${demo.user.globalApiKey}`);
console.log(`user token    ${demo.userToken.value} (id ${demo.userToken.id}, full access)`);
console.log(`account token ${demo.accountToken.value} (id ${demo.accountToken.id})`);
console.log(`DNS read-only ${demo.readOnlyToken.value} (id ${demo.readOnlyToken.id})`);
console.log(`account       ${demo.account.name} (id ${demo.account.id})`);
console.log(`zone          ${demo.zone.name} (id ${demo.zone.id})`);
console.log(
  `worker        ${demo.workerName} (a tail streams 3 events); KV namespace ${demo.kvNamespace.title} (id ${demo.kvNamespace.id})`,
);
console.log(`CLOUDFLARE_R2_ENDPOINT=${r2.urlTemplate} (bucket demo-bucket, object hello.txt)`);
console.log(`try: curl -H "Authorization: Bearer ${demo.userToken.value}" ${fake.url}/user/tokens/verify`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void Promise.all([fake.close(), r2.close()]).then(() => process.exit(0));
  });
}
