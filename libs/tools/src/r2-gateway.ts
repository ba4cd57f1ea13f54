import { createHash } from 'node:crypto';
import type { AuditJournal } from '@warden/audit';
import { upstreamFailureRecord, upstreamIntentRecord, upstreamOutcomeRecord } from '@warden/audit';
import type { Clock } from '@warden/core';
import { WardenError, hasControlCharacters, isWardenError, systemClock } from '@warden/core';
import { r2CredentialsFromApiToken } from '@warden/cloudflare';
import type { R2Client, R2Credentials, R2HttpRequest, R2HttpResponse, R2Method } from '@warden/cloudflare';
import type { UpstreamAnswer, UpstreamBudget } from '@warden/ratelimit';
import { R2_ACCOUNT_RULE, evaluatePolicy, policyRefusal } from './policy.ts';
import type { R2ByteBudget } from './r2-bytes.ts';
import { r2KeySegment } from './r2-key.ts';
import type { R2Request } from './ports.ts';
import { admitParty, askBudget, refuseIfCancelled } from './upstream-gateway.ts';
import type { UpstreamParty } from './upstream-gateway.ts';

/** Default per get or put into the isolate: 10 MB. */
export const DEFAULT_R2_MAX_OBJECT_BYTES = 10 * 1024 * 1024;

export interface R2GatewayDeps {
  readonly client: R2Client;
  readonly budget: UpstreamBudget;
  /** Largest object body a get returns or a put sends (`R2_MAX_OBJECT_BYTES`). */
  readonly maxObjectBytes: number;
  /** The bound on R2 bodies held at once, per process and per tenant. */
  readonly bytes: R2ByteBudget;
  readonly clock?: Clock;
}

/** What R2 requests of a connected account sign with. */
export interface R2Keys {
  /** The R2 access key pair vaulted on the account; used in preference when present. */
  readonly accessKey: R2Credentials | null;
  /** The API token's id, from which (with its value) the S3 credentials derive otherwise. */
  readonly tokenId: string | null;
}

export interface R2Gateway {
  /**
   * One `r2.<op>` of agent code, with the same guarantees as `UpstreamGateway.send`: policy on
   * `r2://bucket/key`, a write-ahead intent record, the principal's R2 budget, signing with the
   * account's R2 access key pair or else the S3 credentials of its API token, the outcome
   * record. Resolves to what the sandbox sees; refusals and R2 errors reject with a `WardenError`.
   */
  send(
    party: UpstreamParty,
    keys: R2Keys,
    request: R2Request,
    journal: AuditJournal,
    signal?: AbortSignal,
  ): Promise<unknown>;
}

const METHOD: Readonly<Record<R2Request['op'], R2Method>> = {
  list: 'GET',
  head: 'HEAD',
  get: 'GET',
  put: 'PUT',
  delete: 'DELETE',
};

/**
 * `r2://bucket/key`, each key segment in the canonical spelling policy rules are written in, in
 * NFC as R2 identifies keys (`r2-key.ts`).
 */
export function r2PolicyPath(bucket: string, key?: string): string {
  if (key === undefined) return `r2://${bucket}`;
  return `r2://${bucket}/${key.split('/').map(r2KeySegment).join('/')}`;
}

/**
 * `r2://account:<account_id>/jurisdiction:<j>/bucket/key`: the object named with its Cloudflare
 * account (lower case) and, outside the default jurisdiction, its jurisdiction (`eu`,
 * `fedramp`), as the audit trail records it; `r2://account:…` and `…jurisdiction:…` rules match
 * it. A rule without the `account:<id>/` part covers the bucket name in every account, one
 * without `jurisdiction:<j>/` in every jurisdiction.
 */
export function r2AccountPath(
  accountId: string | null,
  policyPath: string,
  jurisdiction?: string | null,
): string {
  const account = accountId === null ? '' : `account:${accountId.toLowerCase()}/`;
  const where = jurisdiction && jurisdiction !== 'default' ? `jurisdiction:${jurisdiction}/` : '';
  return `r2://${account}${where}${policyPath.slice('r2://'.length)}`;
}

/** R2's bucket names: 3–63 lower-case letters, digits and hyphens, not starting or ending with a hyphen. */
const BUCKET = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/**
 * `r2://[account:<account_id>/]bucket[/key]` as a person writes it (the policy tester, the audit trail's spelling): the
 * form enforcement evaluates, each key segment decoded and written canonically, so
 * `r2://media/a b` and `r2://media/a%20b` are one object. Refuses what no `r2.<op>` could send.
 */
export function parseR2PolicyPath(
  text: string,
  field: string,
): {
  readonly path: string;
  readonly ruled: string;
  readonly account: string | null;
  readonly jurisdiction: string | null;
} {
  const refuse = (problem: string) =>
    new WardenError('invalid_request', `${field}: ${problem}, e.g. r2://my-bucket/reports/q4.csv`, {
      field,
    });
  let rest = text.slice('r2://'.length);
  let account: string | null = null;
  if (text.startsWith(R2_ACCOUNT_RULE)) {
    const match = /^account:([0-9a-fA-F]{32})\/(.*)$/s.exec(rest);
    if (!match)
      throw refuse('"account:" must be followed by a 32-character Cloudflare account id and "/bucket"');
    account = (match[1] as string).toLowerCase();
    rest = match[2] as string;
  }
  let jurisdiction: string | null = null;
  if (rest.startsWith('jurisdiction:')) {
    const match = /^jurisdiction:(default|eu|fedramp)\/(.*)$/s.exec(rest);
    if (!match) throw refuse('"jurisdiction:" must be followed by default, eu or fedramp and "/bucket"');
    jurisdiction = match[1] as string;
    rest = match[2] as string;
  }
  const named = (ruled: string) => ({
    path: account === null && jurisdiction === null ? ruled : r2AccountPath(account, ruled, jurisdiction),
    ruled,
    account,
    jurisdiction,
  });
  const slash = rest.indexOf('/');
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  if (!BUCKET.test(bucket))
    throw refuse(`"${bucket}" is not an R2 bucket name (3-63 lower-case letters, digits and hyphens)`);
  if (slash === -1) return named(r2PolicyPath(bucket));
  const segments = rest.slice(slash + 1).split('/');
  const decoded = segments.map((segment) => {
    if (segment === '' || segment === '.' || segment === '..')
      throw refuse('an R2 key has no empty, "." or ".." segments');
    try {
      return decodeURIComponent(segment);
    } catch {
      throw refuse(`"${segment}" is not valid percent-encoding`);
    }
  });
  if (decoded.some((segment) => segment.includes('/') || hasControlCharacters(segment)))
    throw refuse('an R2 key segment may not hold an encoded "/" or control characters');
  return named(r2PolicyPath(bucket, decoded.join('/')));
}

function decodeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (entity === 'amp') return '&';
    if (entity === 'lt') return '<';
    if (entity === 'gt') return '>';
    if (entity === 'quot') return '"';
    if (entity === 'apos') return "'";
    const code = entity.startsWith('#x') ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10);
    // What the scrub could not have read as a character is kept as written (never a throw).
    return code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : `&${entity};`;
  });
}

function element(xml: string, name: string): string | null {
  const match = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml);
  return match ? decodeXml(match[1] as string) : null;
}

function blocks(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, 'g'))].map((m) => m[1] as string);
}

/** An S3 error body's code and message (`<Error><Code>…</Code><Message>…</Message></Error>`). */
function s3Error(response: R2HttpResponse): { code: string; message: string } {
  const xml = response.body.toString('utf8');
  return {
    code: element(xml, 'Code') ?? `HTTP ${response.status}`,
    message: (element(xml, 'Message') ?? '').slice(0, 300),
  };
}

function uploaded(value: string | null | undefined): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

function rangeHeader(range: NonNullable<R2Request['range']>): string {
  if (range.suffix !== undefined) return `bytes=-${range.suffix}`;
  const offset = range.offset ?? 0;
  return range.length !== undefined ? `bytes=${offset}-${offset + range.length - 1}` : `bytes=${offset}-`;
}

function putBody(request: R2Request): Buffer {
  const body = request.body ?? '';
  return request.as === 'base64' ? Buffer.from(body, 'base64') : Buffer.from(body, 'utf8');
}

function tooLarge(op: string, bytes: number, limit: number): WardenError {
  return new WardenError(
    'payload_too_large',
    `r2.${op}: the body is ${bytes} bytes, over the R2 size limit of ${limit} bytes (R2_MAX_OBJECT_BYTES)`,
    { limit },
  );
}

export function createR2Gateway(deps: R2GatewayDeps): R2Gateway {
  const clock = deps.clock ?? systemClock;

  /** What the sandbox gets for an answer, or the error it is refused with. */
  function interpret(
    request: R2Request,
    path: string,
    response: R2HttpResponse,
    signedWith: 'access_key' | 'token',
    readable: (key: string) => boolean,
  ): unknown {
    const { op, bucket } = request;
    const method = METHOD[op];
    const ok = response.status >= 200 && response.status < 300;
    if (!ok) {
      // HEAD answers carry no body: a 404 is read as "no such object".
      if (response.status === 404 && op === 'head') return null;
      const error = s3Error(response);
      if (response.status === 404 && error.code === 'NoSuchKey' && op === 'get') return null;
      if (error.code === 'NoSuchBucket' || (response.status === 404 && op === 'list')) {
        throw new WardenError(
          'not_found',
          `r2.${op}: no such bucket "${bucket}" in account ${request.accountId ?? ''} (jurisdiction ${request.jurisdiction}${request.jurisdiction === 'default' ? '; a bucket made in the EU or FedRAMP jurisdiction needs jurisdiction: "eu" or "fedramp"' : ''})`,
        );
      }
      if (
        error.code === 'AccessDenied' ||
        error.code === 'InvalidAccessKeyId' ||
        (response.status === 403 && op === 'head') ||
        // A vaulted pair whose secret is wrong: the person who stored it must fix it.
        (signedWith === 'access_key' && error.code === 'SignatureDoesNotMatch')
      ) {
        const write = method === 'PUT' || method === 'DELETE';
        if (signedWith === 'access_key') {
          const permission = write ? 'Object Read & Write' : 'Object Read only';
          throw new WardenError(
            'forbidden',
            `r2.${op}: R2 refused ${method} ${path} (${error.code}) with the R2 access key vaulted on this connected account: the key needs the ${permission} permission on bucket "${bucket}" (or the pair is wrong or no longer valid). Change it in the Cloudflare dashboard (R2 > Manage API tokens), or vault another with PUT /api/v1/connected_accounts/{id}/r2_access_key.`,
            { permissions: [permission] },
          );
        }
        const permission = write ? 'Workers R2 Storage Write' : 'Workers R2 Storage Read';
        throw new WardenError(
          'forbidden',
          `r2.${op}: R2 refused ${method} ${path} (${error.code}): the token needs the ${permission} permission for account ${request.accountId ?? ''}. Grant it in the Cloudflare dashboard (My Profile > API Tokens) and retry.`,
          { permissions: [permission] },
        );
      }
      if (error.code === 'InvalidRange') {
        throw new WardenError('invalid_request', `r2.${op}: the range is outside the object`, {
          field: 'range',
        });
      }
      if (response.status === 429 || error.code === 'SlowDown') {
        const wait = Number(response.headers['retry-after'] ?? 1) || 1;
        throw new WardenError('rate_limited', `r2.${op}: R2 asked to slow down; retry after ${wait} s`, {
          retryAfterSeconds: wait,
        });
      }
      throw new WardenError(
        'upstream_error',
        `r2.${op}: R2 answered ${response.status} (${error.code}${error.message ? `: ${error.message}` : ''})`,
        { status: response.status },
      );
    }
    const h = response.headers;
    switch (op) {
      case 'list': {
        const xml = response.body.toString('utf8');
        const truncated = element(xml, 'IsTruncated') === 'true';
        const cursor = element(xml, 'NextContinuationToken');
        // Keys (and delimited prefixes) under a path policy refuses to GET are withheld, counted.
        const objects = blocks(xml, 'Contents').map((c) => ({
          key: element(c, 'Key') ?? '',
          size: Number(element(c, 'Size') ?? 0),
          etag: element(c, 'ETag'),
          uploaded: uploaded(element(c, 'LastModified')),
        }));
        const prefixes = blocks(xml, 'CommonPrefixes').map((c) => element(c, 'Prefix') ?? '');
        const shown = objects.filter((o) => readable(o.key));
        const shownPrefixes = prefixes.filter(readable);
        const withheld = objects.length - shown.length + prefixes.length - shownPrefixes.length;
        return {
          objects: shown,
          delimitedPrefixes: shownPrefixes,
          truncated,
          ...(truncated && cursor ? { cursor } : {}),
          ...(withheld > 0 ? { withheld } : {}),
        };
      }
      case 'head':
      case 'get': {
        const contentRange = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(h['content-range'] ?? '');
        const size =
          contentRange && contentRange[3] !== '*'
            ? Number(contentRange[3])
            : Number(h['content-length'] ?? 0);
        const meta = {
          key: request.key,
          size,
          etag: h.etag ?? null,
          uploaded: uploaded(h['last-modified']),
          contentType: h['content-type'] ?? null,
        };
        if (op === 'head') return meta;
        let body: unknown;
        if (request.as === 'base64') body = response.body.toString('base64');
        else if (request.as === 'json') {
          try {
            body = JSON.parse(response.body.toString('utf8'));
          } catch {
            throw new WardenError(
              'invalid_request',
              `r2.get: ${path} is not valid JSON; read it with as: 'text'`,
              { field: 'as' },
            );
          }
        } else body = response.body.toString('utf8');
        return {
          ...meta,
          ...(contentRange
            ? {
                range: {
                  offset: Number(contentRange[1]),
                  length: Number(contentRange[2]) - Number(contentRange[1]) + 1,
                },
              }
            : {}),
          body,
        };
      }
      case 'put':
        return { key: request.key, size: putBody(request).length, etag: h.etag ?? null };
      case 'delete':
        return { key: request.key, deleted: true };
    }
  }

  async function send(
    party: UpstreamParty,
    keys: R2Keys,
    asked: R2Request,
    journal: AuditJournal,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const started = clock.now().getTime();
    const method = METHOD[asked.op];
    // R2 identifies keys in NFC: policy checks, and R2 is sent, that one spelling (`r2-key.ts`).
    const request: R2Request = {
      ...asked,
      ...(asked.key !== undefined ? { key: asked.key.normalize('NFC') } : {}),
      ...(asked.prefix !== undefined ? { prefix: asked.prefix.normalize('NFC') } : {}),
    };
    const account = request.accountId?.toLowerCase();
    /** What rules match (with `r2Account`), and the account-qualified name everything shows. */
    const ruled = r2PolicyPath(request.bucket, request.key);
    const path = r2AccountPath(account ?? null, ruled, request.jurisdiction);
    const onAccount = {
      ...(account === undefined ? {} : { r2Account: account }),
      r2Jurisdiction: request.jurisdiction,
    };
    const body = request.op === 'put' ? putBody(request) : undefined;
    const query =
      request.op === 'list'
        ? {
            'list-type': '2',
            ...(request.prefix !== undefined ? { prefix: request.prefix } : {}),
            ...(request.delimiter !== undefined ? { delimiter: request.delimiter } : {}),
            ...(request.cursor !== undefined ? { 'continuation-token': request.cursor } : {}),
            ...(request.limit !== undefined ? { 'max-keys': String(request.limit) } : {}),
          }
        : undefined;
    const facts = {
      method,
      path,
      pathTemplate: `r2://${account === undefined ? '' : 'account:{account_id}/'}${request.jurisdiction === 'default' ? '' : 'jurisdiction:{jurisdiction}/'}{bucket}${request.key === undefined ? '' : '/{key}'}`,
      action: `r2.${request.op}`,
      requestBytes: body?.length ?? 0,
    };
    const record = (intentId: string | null, error: WardenError, status: number | null = null) =>
      journal.later([
        upstreamFailureRecord(party.subject, facts, intentId, {
          error,
          status,
          durationMs: clock.now().getTime() - started,
        }),
      ]);
    /** Refused before anything was recorded as sent: an outcome without an intent. */
    const refuse = (error: WardenError): never => {
      record(null, error);
      throw error;
    };

    if (body && body.length > deps.maxObjectBytes)
      refuse(tooLarge(request.op, body.length, deps.maxObjectBytes));
    if (party.policy) {
      // A HEAD reads, as a GET does; rules name GET for both.
      const decision = evaluatePolicy(party.policy.tenant, party.policy.identity, {
        method: method === 'HEAD' ? 'GET' : method,
        path: ruled,
        ...onAccount,
      });
      if (!decision.allowed) refuse(policyRefusal(decision, { method, path }));
      const folder = request.prefix?.slice(0, request.prefix.lastIndexOf('/') + 1);
      if (folder) {
        // A listing inside a path policy refuses: refused as a whole, naming the prefix.
        const inside = r2PolicyPath(request.bucket, folder).replace(/\/+$/, '');
        const under = evaluatePolicy(party.policy.tenant, party.policy.identity, {
          method: 'GET',
          path: inside,
          ...onAccount,
        });
        if (!under.allowed) {
          refuse(
            new WardenError(
              'policy_denied',
              `r2.list: prefix "${request.prefix}" lists objects under ${r2AccountPath(account ?? null, inside, request.jurisdiction)}, which is refused: ${under.reason}; list another prefix`,
              { rule: under.rule, scope: under.scope, field: 'prefix' },
            ),
          );
        }
      }
      if (decision.allowed && decision.approval && !party.approved) {
        refuse(
          new WardenError(
            'policy_denied',
            `${method} ${path} needs a person's approval (${decision.approval.scope} rule ${decision.approval.rule}); R2 writes cannot be held for approval`,
            { rule: decision.approval.rule, scope: decision.approval.scope },
          ),
        );
      }
    }
    const credential = party.credential;
    let signing: R2Credentials;
    if (keys.accessKey) signing = keys.accessKey;
    else if (credential.type === 'api_token' && keys.tokenId !== null)
      signing = r2CredentialsFromApiToken(keys.tokenId, credential.apiToken);
    else {
      signing = refuse(
        new WardenError(
          'forbidden',
          `r2.${request.op}: R2 needs an API token on the connected account (its S3 credentials derive from it) or an R2 access key pair vaulted with PUT /api/v1/connected_accounts/{id}/r2_access_key; this one is ${credential.type === 'api_token' ? 'a token whose id is unknown' : 'a Global API Key'}`,
        ),
      );
    }
    if (request.accountId === null) {
      refuse(
        new WardenError('invalid_request', `r2.${request.op}: accountId is required`, { field: 'accountId' }),
      );
    }

    const [intent] = await journal.commit([
      upstreamIntentRecord(party.subject, {
        ...facts,
        query: query ?? null,
        bodySha256: body === undefined ? null : createHash('sha256').update(body).digest('hex'),
      }),
    ]);
    const intentId = intent?.id ?? null;
    const notSent = (error: WardenError): never => {
      record(intentId, error);
      throw error;
    };

    // The R2 bytes held at once are bounded (`r2-bytes.ts`): a put's body before it is sent, an
    // answer's once R2 has declared its length, both until the result is built.
    const releases: (() => void)[] = [];
    const hold = async (bytes: number) => {
      if (bytes > 0) releases.push(await deps.bytes.reserve(party.tenantId, bytes, request.op, signal));
    };
    try {
      if (body) await hold(body.length).catch((error: unknown) => notSent(error as WardenError));
      const granted = await admitParty(
        deps.budget,
        party,
        askBudget(deps.budget, party, { kind: 'r2', signal }),
        notSent,
      );
      // The last look before the request leaves, once it is signed: a caller that went away
      // meanwhile sends nothing, and its place is given back (`refuseIfCancelled`).
      let withdrawn = false;
      const beforeSend = async () => {
        try {
          await refuseIfCancelled(deps.budget, granted, signal, notSent, `r2.${request.op}`);
        } catch (error) {
          withdrawn = true;
          throw error;
        }
      };

      const http: R2HttpRequest = {
        method,
        accountId: request.accountId as string,
        jurisdiction: request.jurisdiction,
        bucket: request.bucket,
        ...(request.key !== undefined ? { key: request.key } : {}),
        ...(query ? { query } : {}),
        ...(body ? { body } : {}),
        ...(request.op === 'put'
          ? {
              contentType:
                request.contentType ??
                (request.as === 'json'
                  ? 'application/json'
                  : request.as === 'base64'
                    ? 'application/octet-stream'
                    : 'text/plain; charset=utf-8'),
            }
          : {}),
        ...(request.range ? { range: rangeHeader(request.range) } : {}),
        ...(signal ? { signal } : {}),
        beforeSend,
        admitBody: (declared) => hold(Math.min(declared ?? deps.maxObjectBytes, deps.maxObjectBytes)),
      };
      let response: R2HttpResponse;
      try {
        response = await deps.client.send(signing, credential, http);
      } catch (error) {
        // Withdrawn before it left: already given back and recorded as not sent.
        if (withdrawn) throw error;
        await deps.budget.observe(granted, null);
        const wrapped = isWardenError(error)
          ? new WardenError(
              error.code,
              error.message.startsWith('r2.') ? error.message : `r2.${request.op}: ${error.message}`,
              error.details,
            )
          : new WardenError('upstream_error', `r2.${request.op}: the request to R2 failed`);
        record(intentId, wrapped);
        throw wrapped;
      }
      const answer: UpstreamAnswer = {
        status: response.status,
        retryAfterSeconds: response.status === 429 ? Number(response.headers['retry-after'] ?? 1) || 1 : null,
        rateLimit: null,
        rateLimitPolicy: null,
      };
      await deps.budget.observe(granted, answer);
      const success = response.status >= 200 && response.status < 300;
      const failure = success ? null : s3Error(response);
      journal.later([
        upstreamOutcomeRecord(party.subject, facts, intentId, {
          outcome: success ? 'success' : response.status === 429 ? 'rate_limited' : 'error',
          error: failure
            ? { code: failure.code, message: failure.message || `HTTP ${response.status}` }
            : null,
          status: response.status,
          cfRay: response.cfRay,
          durationMs: clock.now().getTime() - started,
          responseBytes: response.body.length,
        }),
      ]);
      const policy = party.policy;
      const readable = (key: string) =>
        policy === null ||
        evaluatePolicy(policy.tenant, policy.identity, {
          method: 'GET',
          path: r2PolicyPath(request.bucket, key),
          ...onAccount,
        }).allowed;
      return interpret(request, path, response, keys.accessKey ? 'access_key' : 'token', readable);
    } finally {
      for (const release of releases) release();
    }
  }

  return { send };
}
