import { AwsClient } from 'aws4fetch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createR2Client, r2CredentialsFromApiToken } from '@warden/cloudflare';
import type { CloudflareCredential, R2HttpRequest } from '@warden/cloudflare';
import { FAKE_CF_PERMISSION_GROUPS } from './fake-cloudflare/fake-cloudflare.permissions.ts';
import { startFakeCloudflare } from './fake-cloudflare/fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare/fake-cloudflare.server.ts';
import { startFakeR2 } from './fake-r2.ts';
import type { FakeR2 } from './fake-r2.ts';

describe('fake R2: SigV4 verified by @smithy/signature-v4 against requests Warden signs', () => {
  let cf: FakeCloudflare;
  let r2: FakeR2;
  let accountId: string;
  let writer: { id: string; value: string };
  let reader: { id: string; value: string };
  const client = () => createR2Client({ endpoint: r2.urlTemplate, maxResponseBytes: 1024 * 1024 });

  beforeAll(async () => {
    cf = await startFakeCloudflare();
    r2 = await startFakeR2({ state: cf.state });
    const user = cf.state.createUser({ email: 'r2@example.com' });
    accountId = cf.state.createAccount({ name: 'R2', members: [user.id] }).id;
    writer = cf.state.createUserToken({
      userId: user.id,
      permissions: FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Write']!,
    });
    reader = cf.state.createUserToken({
      userId: user.id,
      permissions: FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Read']!,
    });
    r2.createBucket(accountId, 'media');
    r2.createBucket(accountId, 'vault', 'eu');
  });
  afterAll(async () => {
    await r2.close();
    await cf.close();
  });

  function send(token: { id: string; value: string }, request: Omit<R2HttpRequest, 'accountId'>) {
    const credential: CloudflareCredential = { type: 'api_token', apiToken: token.value };
    return client().send(r2CredentialsFromApiToken(token.id, token.value), credential, {
      accountId,
      ...request,
    });
  }

  it('puts, lists, heads, gets (a range too) and deletes, including keys that need encoding', async () => {
    const key = "reports/2026 Q4 (final)!*'~+ü.txt";
    const put = await send(writer, {
      method: 'PUT',
      jurisdiction: 'default',
      bucket: 'media',
      key,
      body: Buffer.from('hello R2'),
      contentType: 'text/plain',
    });
    expect(put.status).toBe(200);
    expect(r2.getObject(accountId, 'media', key)?.body.toString()).toBe('hello R2');

    const list = await send(reader, {
      method: 'GET',
      jurisdiction: 'default',
      bucket: 'media',
      query: { 'list-type': '2', prefix: 'reports/', delimiter: '/' },
    });
    expect(list.status).toBe(200);
    expect(list.body.toString()).toContain('<Key>reports/2026 Q4 (final)!*&#39;~+ü.txt</Key>');

    const head = await send(reader, { method: 'HEAD', jurisdiction: 'default', bucket: 'media', key });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('8');

    const range = await send(reader, {
      method: 'GET',
      jurisdiction: 'default',
      bucket: 'media',
      key,
      range: 'bytes=6-',
    });
    expect(range.status).toBe(206);
    expect(range.body.toString()).toBe('R2');

    const del = await send(writer, { method: 'DELETE', jurisdiction: 'default', bucket: 'media', key });
    expect(del.status).toBe(204);
    expect(r2.getObject(accountId, 'media', key)).toBeUndefined();
  });

  it('withdraws a request whose last look (beforeSend, once signed) throws: nothing reaches R2, the error passes on as is', async () => {
    r2.clearRequests();
    const withdrawn = new Error('the caller went away');
    let looked = 0;
    await expect(
      send(writer, {
        method: 'PUT',
        jurisdiction: 'default',
        bucket: 'media',
        key: 'withdrawn.txt',
        body: Buffer.from('never sent'),
        beforeSend: async () => {
          looked++;
          throw withdrawn;
        },
      }),
    ).rejects.toBe(withdrawn);
    expect(looked).toBe(1);
    expect(r2.requests()).toEqual([]);
    expect(r2.getObject(accountId, 'media', 'withdrawn.txt')).toBeUndefined();
    // A last look that lets it go: sent as usual.
    const sent = await send(writer, {
      method: 'HEAD',
      jurisdiction: 'default',
      bucket: 'media',
      key: 'withdrawn.txt',
      beforeSend: async () => {
        looked++;
      },
    });
    expect(sent.status).toBe(404);
    expect(looked).toBe(2);
    expect(r2.requests()).toHaveLength(1);
  });

  it('goes to the jurisdiction endpoint the request names', async () => {
    const put = await send(writer, {
      method: 'PUT',
      jurisdiction: 'eu',
      bucket: 'vault',
      key: 'k',
      body: Buffer.from('eu'),
    });
    expect(put.status).toBe(200);
    expect(r2.getObject(accountId, 'vault', 'k', 'eu')?.body.toString()).toBe('eu');
    const wrong = await send(writer, { method: 'GET', jurisdiction: 'default', bucket: 'vault', key: 'k' });
    expect(wrong.status).toBe(404);
    expect(wrong.body.toString()).toContain('<Code>NoSuchBucket</Code>');
  });

  it('refuses a signature made with the wrong secret (the token value itself, not its SHA-256)', async () => {
    const credential: CloudflareCredential = { type: 'api_token', apiToken: writer.value };
    const res = await client().send({ accessKeyId: writer.id, secretAccessKey: writer.value }, credential, {
      method: 'GET',
      accountId,
      jurisdiction: 'default',
      bucket: 'media',
      query: { 'list-type': '2' },
    });
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain('<Code>SignatureDoesNotMatch</Code>');
  });

  it('refuses a signed request altered on the way (a signed header, the path, the body)', async () => {
    const { accessKeyId, secretAccessKey } = r2CredentialsFromApiToken(writer.id, writer.value);
    const aws = new AwsClient({ accessKeyId, secretAccessKey, service: 's3', region: 'auto', retries: 0 });
    r2.putObject(accountId, 'media', 'a.txt', 'abcdef');
    const url = `${r2.url}/${accountId}/default/media/a.txt`;
    const signed = await aws.sign(url, {
      method: 'GET',
      headers: { range: 'bytes=0-1' },
      aws: { allHeaders: true },
    });
    expect((await fetch(signed.clone())).status).toBe(206);

    const headers = new Headers(signed.headers);
    const date = headers.get('x-amz-date')!;
    headers.set(
      'x-amz-date',
      date.replace(/\d(?=Z$)/, (d) => String((Number(d) + 1) % 10)),
    );
    const tampered = await fetch(url, { method: 'GET', headers });
    expect(tampered.status).toBe(403);
    expect(await tampered.text()).toContain('SignatureDoesNotMatch');

    const otherPath = await fetch(`${r2.url}/${accountId}/default/media/b.txt`, { headers: signed.headers });
    expect(otherPath.status).toBe(403);

    const put = await aws.sign(url, {
      method: 'PUT',
      body: Buffer.from('original'),
      headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    const swapped = await fetch(url, { method: 'PUT', headers: put.headers, body: Buffer.from('swapped!') });
    expect(swapped.status).toBe(200); // UNSIGNED-PAYLOAD: the body is not covered
    const hashed = await aws.sign(url, {
      method: 'PUT',
      body: Buffer.from('original'),
      headers: { 'x-amz-content-sha256': '0682c5f2076f099c34cfdd15a9e063849ed437a49677e6fcc5b4198c76575be5' },
    });
    const swappedSigned = await fetch(url, {
      method: 'PUT',
      headers: hashed.headers,
      body: Buffer.from('swapped!'),
    });
    expect(swappedSigned.status).toBe(400);
    expect(await swappedSigned.text()).toContain('XAmzContentSHA256Mismatch');
  });

  it('refuses a Range or Content-Type that is not signed, or was altered after signing', async () => {
    const { accessKeyId, secretAccessKey } = r2CredentialsFromApiToken(writer.id, writer.value);
    const aws = new AwsClient({ accessKeyId, secretAccessKey, service: 's3', region: 'auto', retries: 0 });
    r2.putObject(accountId, 'media', 'r.txt', 'abcdef');
    const url = `${r2.url}/${accountId}/default/media/r.txt`;
    const refused = async (res: Response) => [res.status, (await res.text()).match(/<Code>(\w+)/)?.[1]];

    // aws4fetch's default leaves Range and Content-Type unsigned: refused.
    const unsigned = await aws.sign(url, { method: 'GET', headers: { range: 'bytes=0-1' } });
    expect(await refused(await fetch(unsigned))).toEqual([403, 'SignatureDoesNotMatch']);

    const signed = await aws.sign(url, {
      method: 'GET',
      headers: { range: 'bytes=0-1' },
      aws: { allHeaders: true },
    });
    expect((await fetch(signed.clone())).status).toBe(206);
    const headers = new Headers(signed.headers);
    headers.set('range', 'bytes=2-5');
    expect(await refused(await fetch(url, { headers }))).toEqual([403, 'SignatureDoesNotMatch']);

    const put = await aws.sign(url, {
      method: 'PUT',
      body: 'typed',
      headers: { 'content-type': 'text/plain' },
      aws: { allHeaders: true },
    });
    const retyped = new Headers(put.headers);
    retyped.set('content-type', 'text/html');
    expect(await refused(await fetch(url, { method: 'PUT', headers: retyped, body: 'typed' }))).toEqual([
      403,
      'SignatureDoesNotMatch',
    ]);
    expect(r2.getObject(accountId, 'media', 'r.txt')?.body.toString()).toBe('abcdef');
  });

  it('receives the range and content type Warden signs', async () => {
    const put = await send(writer, {
      method: 'PUT',
      jurisdiction: 'default',
      bucket: 'media',
      key: 'typed.txt',
      body: Buffer.from('0123456789'),
      contentType: 'text/x-typed',
    });
    expect(put.status).toBe(200);
    expect(r2.getObject(accountId, 'media', 'typed.txt')?.contentType).toBe('text/x-typed');
    const range = await send(reader, {
      method: 'GET',
      jurisdiction: 'default',
      bucket: 'media',
      key: 'typed.txt',
      range: 'bytes=2-4',
    });
    expect([range.status, range.body.toString()]).toEqual([206, '234']);
    const signed = r2
      .requests()
      .slice(-2)
      .map((r) => r.signedHeaders);
    expect(signed[0]).toEqual(expect.arrayContaining(['content-type']));
    expect(signed[1]).toEqual(expect.arrayContaining(['range']));
  });

  it("keeps the token's derived secret out of a body also when an R2 key pair signs", async () => {
    const pair = r2.createAccessKey(accountId, 'read');
    const derived = r2CredentialsFromApiToken(writer.id, writer.value).secretAccessKey;
    r2.putObject(
      accountId,
      'media',
      'derived.txt',
      `a ${derived} b ${derived.toUpperCase()} c ${pair.secretAccessKey} d`,
    );
    const res = await client().send(
      pair,
      { type: 'api_token', apiToken: writer.value },
      { method: 'GET', accountId, jurisdiction: 'default', bucket: 'media', key: 'derived.txt' },
    );
    expect(res.body.toString()).toBe('a [REDACTED] b [REDACTED] c [REDACTED] d');
  });

  it('answers AccessDenied to a read-only token writing, and to an unknown key id InvalidAccessKeyId', async () => {
    const denied = await send(reader, {
      method: 'PUT',
      jurisdiction: 'default',
      bucket: 'media',
      key: 'x',
      body: Buffer.from('x'),
    });
    expect(denied.status).toBe(403);
    expect(denied.body.toString()).toContain('<Code>AccessDenied</Code>');
    const unknown = await send(
      { id: 'f'.repeat(32), value: writer.value },
      { method: 'GET', jurisdiction: 'default', bucket: 'media', key: 'x' },
    );
    expect(unknown.status).toBe(403);
    expect(unknown.body.toString()).toContain('InvalidAccessKeyId');
  });

  it('refuses a response larger than the client limit, naming it', async () => {
    r2.putObject(accountId, 'media', 'big.bin', Buffer.alloc(2 * 1024 * 1024, 1));
    await expect(
      send(reader, { method: 'GET', jurisdiction: 'default', bucket: 'media', key: 'big.bin' }),
    ).rejects.toMatchObject({
      code: 'payload_too_large',
      message: expect.stringContaining('1048576 bytes (R2_MAX_OBJECT_BYTES)'),
    });
  });
});
