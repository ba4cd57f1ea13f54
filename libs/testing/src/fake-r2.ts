import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Checksum, SourceData } from '@smithy/types';
import { canOnAccount } from './fake-cloudflare/fake-cloudflare.access.ts';
import type { Principal } from './fake-cloudflare/fake-cloudflare.access.ts';
import { FAKE_CF_PERMISSION_GROUPS } from './fake-cloudflare/fake-cloudflare.permissions.ts';
import type { FakeCloudflareState } from './fake-cloudflare/fake-cloudflare.state.ts';

/**
 * An S3-compatible fake of R2's data plane (`https://<account_id>[.<jurisdiction>].r2.cloudflarestorage.com`),
 * path-style under its own base URL: `<url>/<account_id>/<jurisdiction>/<bucket>/<key>`, so
 * `url` with placeholders (`urlTemplate`) is what Warden's `CLOUDFLARE_R2_ENDPOINT` takes.
 *
 * Every request must carry an AWS Signature V4 that `@smithy/signature-v4` (the AWS SDK's
 * signer, not the one Warden signs with) reproduces from the request as received, with the
 * credentials Cloudflare derives from an API token: the token's id as the access key id and
 * the SHA-256 of its value as the secret. The payload hash is checked against the body. Tokens
 * come from the fake Cloudflare's state, and their permissions decide: reads need Workers R2
 * Storage Read (`com.cloudflare.edge.r2.bucket.read`), writes Workers R2 Storage Write.
 *
 * Operations: ListObjectsV2, HeadObject, GetObject (with `Range`), PutObject, DeleteObject.
 * Errors answer as S3 does: XML `<Error><Code>…` with 403/404/400.
 *
 * Keys are identified in Unicode NFC, as R2 documents ("Unicode interoperability"): `café` with a
 * precomposed `é` and with `e` + U+0301 are one object, listed in the spelling last written.
 */
export interface FakeR2Object {
  /** The key as last written (R2 lists that spelling); the object is found by its NFC form. */
  readonly key: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly etag: string;
  readonly lastModified: Date;
}

export interface FakeR2RequestLogEntry {
  readonly method: string;
  /** The path after the account and jurisdiction: `/<bucket>/<key>`, as sent (encoded). */
  readonly path: string;
  readonly accountId: string;
  readonly jurisdiction: string;
  readonly query: string;
  readonly status: number;
  /** The S3 error code answered, if any (`SignatureDoesNotMatch`, `AccessDenied`, …). */
  readonly error: string | null;
  readonly accessKeyId: string | null;
  /** The headers the request's signature covers (its `SignedHeaders`), empty when unsigned. */
  readonly signedHeaders: readonly string[];
}

export interface FakeR2 {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** `http://127.0.0.1:PORT/{account_id}/{jurisdiction}`, for `CLOUDFLARE_R2_ENDPOINT`. */
  readonly urlTemplate: string;
  createBucket(accountId: string, name: string, jurisdiction?: string): void;
  putObject(
    accountId: string,
    bucket: string,
    key: string,
    body: Buffer | string,
    options?: { contentType?: string; jurisdiction?: string },
  ): void;
  getObject(accountId: string, bucket: string, key: string, jurisdiction?: string): FakeR2Object | undefined;
  /**
   * An R2 access key pair of the account (R2 > Manage API tokens), for reads or for reads and
   * writes: a random 32-character id and 64-character secret, unrelated to any API token's, that
   * the fake verifies signatures with. `revokeAccessKey` makes it unknown again.
   */
  createAccessKey(
    accountId: string,
    access: 'read' | 'write',
  ): { readonly accessKeyId: string; readonly secretAccessKey: string };
  revokeAccessKey(accessKeyId: string): void;
  /**
   * Holds the bodies of whole-object GETs (not ranges) of one object (any account and
   * jurisdiction): the headers and the first 64 KiB go out, the rest once `release` is called,
   * so a test can keep a transfer open.
   */
  pauseBodies(bucket: string, key: string): { stalled(): number; release(): void };
  requests(): readonly FakeR2RequestLogEntry[];
  clearRequests(): void;
  close(): Promise<void>;
}

export interface FakeR2Options {
  /** Whose tokens sign (the fake Cloudflare's state). */
  readonly state: FakeCloudflareState;
  readonly port?: number;
  /** Largest request body accepted. Default 64 MB. */
  readonly maxBodyBytes?: number;
}

const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const MAX_SKEW_MS = 15 * 60 * 1000;
const READ = ['com.cloudflare.edge.r2.bucket.read', 'com.cloudflare.edge.r2.bucket.write'];
const WRITE = ['com.cloudflare.edge.r2.bucket.write'];

class S3Error extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** SHA-256 and HMAC-SHA256 as `@smithy/signature-v4` takes them (its crypto, from node:crypto). */
class NodeSha256 implements Checksum {
  readonly #secret: SourceData | undefined;
  #hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;

  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.#hash = this.#fresh();
  }

  #fresh() {
    return this.#secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.#secret));
  }

  update(data: Uint8Array | string): void {
    this.#hash.update(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }

  reset(): void {
    this.#hash = this.#fresh();
  }
}

function toBuffer(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        reject(new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseAmzDate(value: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return null;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

export async function startFakeR2(options: FakeR2Options): Promise<FakeR2> {
  const { state } = options;
  const maxBody = options.maxBodyBytes ?? 64 * 1024 * 1024;
  /** `<account>/<jurisdiction>/<bucket>` → objects by key. */
  const buckets = new Map<string, Map<string, FakeR2Object>>();
  const log: FakeR2RequestLogEntry[] = [];
  /** R2 access key pairs by id: the secret and the account token whose permissions they carry. */
  const accessKeys = new Map<string, { secret: string; tokenId: string }>();
  const bucketKey = (accountId: string, jurisdiction: string, bucket: string) =>
    `${accountId}/${jurisdiction}/${bucket}`;
  /** `<bucket>/<NFC key>` → the pause its GET bodies wait for. */
  const pauses = new Map<string, { stalled: number; released: Promise<void>; release: () => void }>();

  function store(
    accountId: string,
    jurisdiction: string,
    bucket: string,
    key: string,
    body: Buffer,
    contentType: string,
  ) {
    const objects = buckets.get(bucketKey(accountId, jurisdiction, bucket));
    if (!objects) throw new Error(`fake R2: no bucket ${bucket}`);
    objects.set(key.normalize('NFC'), {
      key,
      body,
      contentType,
      etag: `"${createHash('md5').update(body).digest('hex')}"`,
      lastModified: new Date(Math.floor(Date.now() / 1000) * 1000),
    });
  }

  /** The token that signed, once its signature checks out; throws the S3 error otherwise. */
  async function authenticate(
    req: IncomingMessage,
    url: URL,
    body: Buffer,
  ): Promise<{ principal: Principal; keyId: string }> {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? AUTH.exec(header) : null;
    if (!match) throw new S3Error(400, 'InvalidArgument', 'Authorization header is missing or malformed');
    const [, keyId, day, region, service, signedHeaders, signature] = match as unknown as string[];
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const date = parseAmzDate(amzDate);
    if (!date || amzDate.slice(0, 8) !== day)
      throw new S3Error(
        400,
        'InvalidArgument',
        'X-Amz-Date is missing or does not match the credential scope',
      );
    if (Math.abs(date.getTime() - Date.now()) > MAX_SKEW_MS) {
      throw new S3Error(
        403,
        'RequestTimeTooSkewed',
        'The difference between the request time and the server time is too large',
      );
    }
    if (region !== 'auto' || service !== 's3')
      throw new S3Error(
        400,
        'AuthorizationHeaderMalformed',
        `region must be auto and service s3, got ${region}/${service}`,
      );
    const accessKey = accessKeys.get(keyId!);
    const token = state.tokens.get(accessKey ? accessKey.tokenId : keyId!);
    if (!token || state.tokenStatus(token) !== 'active') {
      throw new S3Error(
        403,
        'InvalidAccessKeyId',
        'The AWS Access Key Id you provided does not exist in our records',
      );
    }
    const payloadHash = String(req.headers['x-amz-content-sha256'] ?? '');
    if (
      payloadHash !== 'UNSIGNED-PAYLOAD' &&
      payloadHash !== createHash('sha256').update(body).digest('hex')
    ) {
      throw new S3Error(
        400,
        'XAmzContentSHA256Mismatch',
        'The provided x-amz-content-sha256 header does not match what was computed',
      );
    }
    const names = signedHeaders!.split(';');
    if (!names.includes('host') || !names.includes('x-amz-date') || !names.includes('x-amz-content-sha256')) {
      throw new S3Error(
        400,
        'AuthorizationHeaderMalformed',
        'host, x-amz-date and x-amz-content-sha256 must be signed',
      );
    }
    // Stricter than R2, which signs what the client lists: a Range or Content-Type left unsigned
    // could be changed on the way, so a client that leaves them out fails here.
    for (const name of ['range', 'content-type']) {
      if (req.headers[name] !== undefined && !names.includes(name))
        throw new S3Error(403, 'SignatureDoesNotMatch', `the ${name} header is sent but not signed`);
    }
    const headers: Record<string, string> = {};
    for (const name of names) {
      const value = req.headers[name];
      if (value === undefined)
        throw new S3Error(403, 'SignatureDoesNotMatch', `signed header ${name} is missing`);
      headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prior = query[k];
      query[k] = prior === undefined ? v : Array.isArray(prior) ? [...prior, v] : [prior, v];
    }
    const signer = new SignatureV4({
      credentials: {
        accessKeyId: keyId!,
        secretAccessKey: accessKey
          ? accessKey.secret
          : createHash('sha256').update(token.value, 'utf8').digest('hex'),
      },
      region: 'auto',
      service: 's3',
      sha256: NodeSha256,
      uriEscapePath: false,
      applyChecksum: false,
    });
    const signed = await signer.sign(
      {
        method: req.method ?? 'GET',
        protocol: 'http:',
        hostname: url.hostname,
        ...(url.port ? { port: Number(url.port) } : {}),
        path: url.pathname,
        query,
        headers,
        body,
      },
      { signingDate: date, signableHeaders: new Set(names) },
    );
    const expected =
      /Signature=([0-9a-f]{64})/.exec(
        String(signed.headers.authorization ?? signed.headers.Authorization),
      )?.[1] ?? '';
    const expectedHeaders = /SignedHeaders=([^,]+)/.exec(
      String(signed.headers.authorization ?? signed.headers.Authorization),
    )?.[1];
    if (
      expectedHeaders !== signedHeaders ||
      expected.length !== signature!.length ||
      !timingSafeEqual(Buffer.from(expected), Buffer.from(signature!))
    ) {
      throw new S3Error(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided',
      );
    }
    if (token.owner.kind === 'user') {
      const user = state.users.get(token.owner.userId);
      if (!user) throw new S3Error(403, 'InvalidAccessKeyId', 'unknown owner');
      return { principal: { kind: 'user_token', user, token }, keyId: keyId! };
    }
    const account = state.accounts.get(token.owner.accountId);
    if (!account) throw new S3Error(403, 'InvalidAccessKeyId', 'unknown owner');
    return { principal: { kind: 'account_token', account, token }, keyId: keyId! };
  }

  function listXml(bucket: string, objects: Map<string, FakeR2Object>, q: URLSearchParams): string {
    if (q.get('list-type') !== '2')
      throw new S3Error(400, 'NotImplemented', 'only ListObjectsV2 (list-type=2) is implemented');
    const prefix = (q.get('prefix') ?? '').normalize('NFC');
    const delimiter = q.get('delimiter') ?? '';
    const maxKeys = Math.min(1000, Math.max(0, Number(q.get('max-keys') ?? 1000) || 0));
    const after = q.get('continuation-token')
      ? Buffer.from(q.get('continuation-token')!, 'base64url').toString('utf8')
      : (q.get('start-after') ?? '');
    const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
    const contents: string[] = [];
    const prefixes: string[] = [];
    let last = '';
    let truncated = false;
    for (const key of keys) {
      if (contents.length + prefixes.length >= maxKeys) {
        truncated = true;
        break;
      }
      if (delimiter) {
        const at = key.indexOf(delimiter, prefix.length);
        if (at >= 0) {
          const common = key.slice(0, at + delimiter.length);
          if (!prefixes.includes(common)) prefixes.push(common);
          last = key;
          continue;
        }
      }
      const o = objects.get(key)!;
      contents.push(
        `<Contents><Key>${xmlEscape(o.key)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${xmlEscape(o.etag)}</ETag><Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
      );
      last = key;
    }
    return (
      `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="${XMLNS}"><Name>${xmlEscape(bucket)}</Name>` +
      `<Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${contents.length + prefixes.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys>` +
      (delimiter ? `<Delimiter>${xmlEscape(delimiter)}</Delimiter>` : '') +
      `<IsTruncated>${truncated}</IsTruncated>` +
      (truncated
        ? `<NextContinuationToken>${Buffer.from(last, 'utf8').toString('base64url')}</NextContinuationToken>`
        : '') +
      contents.join('') +
      prefixes.map((p) => `<CommonPrefixes><Prefix>${xmlEscape(p)}</Prefix></CommonPrefixes>`).join('') +
      `</ListBucketResult>`
    );
  }

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    entry: {
      accountId: string;
      jurisdiction: string;
      path: string;
      query: string;
      keyId: string | null;
      signedHeaders: readonly string[];
    },
  ): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const parts = url.pathname.split('/');
    // ['', account, jurisdiction, bucket, ...key]
    const [, accountId = '', jurisdiction = '', bucket = ''] = parts;
    entry.accountId = accountId;
    entry.jurisdiction = jurisdiction;
    entry.path = `/${parts.slice(3).join('/')}`;
    entry.query = url.search.slice(1);
    const signed =
      typeof req.headers.authorization === 'string' ? AUTH.exec(req.headers.authorization) : null;
    entry.signedHeaders = signed?.[5]?.split(';') ?? [];
    const body = await readBody(req, maxBody);
    const { principal, keyId } = await authenticate(
      req,
      new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`),
      body,
    );
    entry.keyId = keyId;
    const account = state.accounts.get(accountId);
    const method = req.method ?? 'GET';
    const write = method === 'PUT' || method === 'DELETE';
    if (!account || !canOnAccount(principal, account, write ? WRITE : READ)) {
      throw new S3Error(403, 'AccessDenied', 'Access Denied');
    }
    const objects = buckets.get(bucketKey(accountId, jurisdiction, bucket));
    if (!bucket || !objects) throw new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist');
    const rawKey = parts.slice(4).join('/');
    if (parts.length < 5) {
      if (method !== 'GET')
        throw new S3Error(405, 'MethodNotAllowed', 'only GET (ListObjectsV2) on a bucket');
      const xml = listXml(bucket, objects, url.searchParams);
      res.writeHead(200, { 'content-type': 'application/xml', 'cf-ray': 'fake-r2' });
      res.end(xml);
      return;
    }
    const written = decodeURIComponent(rawKey);
    const key = written.normalize('NFC');
    if (method === 'PUT') {
      store(
        accountId,
        jurisdiction,
        bucket,
        written,
        body,
        String(req.headers['content-type'] ?? 'application/octet-stream'),
      );
      res.writeHead(200, { etag: objects.get(key)!.etag });
      res.end();
      return;
    }
    if (method === 'DELETE') {
      objects.delete(key);
      res.writeHead(204);
      res.end();
      return;
    }
    const object = objects.get(key);
    if (!object) throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.');
    const headers: Record<string, string> = {
      'content-type': object.contentType,
      etag: object.etag,
      'last-modified': object.lastModified.toUTCString(),
      'accept-ranges': 'bytes',
    };
    const range = req.headers.range;
    if (method === 'GET' && typeof range === 'string') {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range);
      const size = object.body.length;
      let start: number;
      let end: number;
      if (!m || (m[1] === '' && m[2] === ''))
        throw new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable');
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]));
        end = size - 1;
      } else {
        start = Number(m[1]);
        end = m[2] === '' ? size - 1 : Math.min(size - 1, Number(m[2]));
      }
      if (start >= size || start > end)
        throw new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable');
      const slice = object.body.subarray(start, end + 1);
      res.writeHead(206, {
        ...headers,
        'content-length': String(slice.length),
        'content-range': `bytes ${start}-${end}/${size}`,
      });
      res.end(slice);
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(object.body.length) });
    const pause = method === 'HEAD' ? undefined : pauses.get(`${bucket}/${key}`);
    if (pause) {
      res.write(object.body.subarray(0, 64 * 1024));
      pause.stalled++;
      await pause.released;
      res.end(object.body.subarray(64 * 1024));
      return;
    }
    res.end(method === 'HEAD' ? undefined : object.body);
  }

  const server: Server = createServer((req, res) => {
    const entry = {
      accountId: '',
      jurisdiction: '',
      path: '',
      query: '',
      keyId: null as string | null,
      signedHeaders: [] as readonly string[],
    };
    const done = (status: number, error: string | null) =>
      log.push({
        method: req.method ?? 'GET',
        path: entry.path,
        accountId: entry.accountId,
        jurisdiction: entry.jurisdiction,
        query: entry.query,
        status,
        error,
        accessKeyId: entry.keyId,
        signedHeaders: entry.signedHeaders,
      });
    handle(req, res, entry).then(
      () => done(res.statusCode, null),
      (error: unknown) => {
        const e =
          error instanceof S3Error
            ? error
            : new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.');
        if (!res.headersSent) {
          res.writeHead(e.status, { 'content-type': 'application/xml' });
          res.end(
            req.method === 'HEAD'
              ? undefined
              : `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${e.code}</Code><Message>${xmlEscape(e.message)}</Message></Error>`,
          );
        }
        done(e.status, e.code);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    urlTemplate: `${url}/{account_id}/{jurisdiction}`,
    createBucket(accountId, name, jurisdiction = 'default') {
      const key = bucketKey(accountId, jurisdiction, name);
      if (!buckets.has(key)) buckets.set(key, new Map());
    },
    putObject(accountId, bucket, key, body, opts = {}) {
      store(
        accountId,
        opts.jurisdiction ?? 'default',
        bucket,
        key,
        typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
        opts.contentType ?? 'application/octet-stream',
      );
    },
    getObject(accountId, bucket, key, jurisdiction = 'default') {
      return buckets.get(bucketKey(accountId, jurisdiction, bucket))?.get(key.normalize('NFC'));
    },
    createAccessKey(accountId, access) {
      // An R2 token is an account token carrying R2 permissions; its S3 pair is what R2 checks.
      const token = state.createAccountToken({
        accountId,
        name: `R2 access key (${access})`,
        permissions:
          FAKE_CF_PERMISSION_GROUPS[
            access === 'write' ? 'Workers R2 Storage Write' : 'Workers R2 Storage Read'
          ]!,
      });
      const accessKeyId = randomBytes(16).toString('hex');
      const secretAccessKey = randomBytes(32).toString('hex');
      accessKeys.set(accessKeyId, { secret: secretAccessKey, tokenId: token.id });
      return { accessKeyId, secretAccessKey };
    },
    revokeAccessKey(accessKeyId) {
      accessKeys.delete(accessKeyId);
    },
    pauseBodies(bucket, key) {
      let release = () => {};
      const released = new Promise<void>((resolve) => (release = resolve));
      const pause = { stalled: 0, released, release };
      const at = `${bucket}/${key.normalize('NFC')}`;
      pauses.set(at, pause);
      return {
        stalled: () => pause.stalled,
        release: () => {
          pauses.delete(at);
          pause.release();
        },
      };
    },
    requests: () => [...log],
    clearRequests: () => {
      log.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
