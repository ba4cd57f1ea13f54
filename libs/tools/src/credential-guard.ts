import { pathSegments } from './canonical-path.ts';
import { compilePattern, matchPattern, pathSubject } from './policy-matcher.ts';

/**
 * Operations that mint or manage credentials. An agent holding a token with API Tokens
 * Write could otherwise create a live token and walk away with it, outliving every
 * revocation Warden can do. They are refused unless the tenant-wide policy allows their
 * kind (`credential_operations.allow`); when allowed, the secrets in their responses are
 * withheld from the agent unless `credential_operations.reveal_secrets` names the kind, and
 * what they create is recorded so offboarding can revoke it.
 *
 * The catalog follows the Cloudflare API document: every operation whose purpose is to
 * issue, roll, reveal or manage a credential.
 */
export const CREDENTIAL_KINDS = [
  'api_tokens',
  'api_keys',
  'r2_temporary_credentials',
  'access_service_tokens',
  'tunnel_tokens',
  'stream_signing_keys',
  'calls_secrets',
  'images_signing_keys',
  'service_secrets',
] as const;

export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

/** The tenant-wide policy field. Identity policies cannot set it (they only narrow, with deny rules). */
export interface CredentialOperationsPolicy {
  readonly allow?: readonly CredentialKind[];
  readonly reveal_secrets?: readonly CredentialKind[];
}

export const CREDENTIAL_KIND_DESCRIPTIONS: Readonly<Record<CredentialKind, string>> = {
  api_tokens: 'Cloudflare API tokens: create, roll, edit, delete (/user/tokens, /accounts/{id}/tokens)',
  api_keys: 'Global API Key endpoints (/user/api_key)',
  r2_temporary_credentials: 'R2 temporary access credentials (/accounts/{id}/r2/temp-access-credentials)',
  access_service_tokens: 'Access service tokens: create, rotate, refresh',
  tunnel_tokens: 'Cloudflare Tunnel and WARP Connector: creation (its secret) and run and management tokens',
  stream_signing_keys: 'Stream signing keys, and the signed playback tokens made with them',
  calls_secrets: 'Calls (Realtime) app secrets and TURN keys: create, edit, delete',
  images_signing_keys: 'Images URL-signing keys: list (their values), create, delete',
  service_secrets:
    "Other services' secrets Cloudflare issues or shows: Turnstile widget secrets, secondary DNS TSIG keys, IPsec pre-shared keys, Stream live-input keys, alert webhook secrets; and, withheld from answers that are otherwise open, Access application (SaaS, SCIM) and identity provider secrets, DLP dataset secrets, Pages Web Analytics tokens, origin TLS client-auth private keys",
};

interface GuardedOperation {
  readonly kind: CredentialKind;
  readonly methods: readonly string[];
  readonly path: string;
  /** A POST here creates a credential that `DELETE <path>/<result.id>` revokes. */
  readonly revocable?: true;
  /**
   * Not a credential operation but one whose answer shows a secret (configuration holding a
   * secret someone set or Cloudflare generated): open whatever the policy, and only these
   * fields of its answer are withheld unless the kind's secrets are revealed.
   */
  readonly shows?: readonly string[];
}

const WRITES = ['POST', 'PUT', 'PATCH', 'DELETE'];

/** First match wins: the revocable creations come before the broader entries of their kind. */
const GUARDED: readonly GuardedOperation[] = [
  { kind: 'api_tokens', methods: ['POST'], path: '/user/tokens', revocable: true },
  { kind: 'api_tokens', methods: ['POST'], path: '/accounts/*/tokens', revocable: true },
  // Edits can widen a token's permissions and `PUT …/value` rolls its secret; reads (list,
  // get, verify, permission groups) carry no secret and stay open.
  { kind: 'api_tokens', methods: WRITES, path: '/user/tokens/**' },
  { kind: 'api_tokens', methods: WRITES, path: '/accounts/*/tokens/**' },
  { kind: 'api_keys', methods: ['GET', ...WRITES], path: '/user/api_key/**' },
  { kind: 'r2_temporary_credentials', methods: ['POST'], path: '/accounts/*/r2/temp-access-credentials' },
  {
    kind: 'access_service_tokens',
    methods: ['POST'],
    path: '/accounts/*/access/service_tokens',
    revocable: true,
  },
  {
    kind: 'access_service_tokens',
    methods: ['POST'],
    path: '/zones/*/access/service_tokens',
    revocable: true,
  },
  { kind: 'access_service_tokens', methods: ['POST'], path: '/accounts/*/access/service_tokens/*/*' },
  { kind: 'access_service_tokens', methods: ['POST'], path: '/zones/*/access/service_tokens/*/*' },
  { kind: 'tunnel_tokens', methods: ['GET'], path: '/accounts/*/cfd_tunnel/*/token' },
  { kind: 'tunnel_tokens', methods: ['GET'], path: '/accounts/*/warp_connector/*/token' },
  // Creating a tunnel issues its secret (and its run token); a management token is one too.
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/cfd_tunnel' },
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/warp_connector' },
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/tunnels' },
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/cfd_tunnel/*/management' },
  { kind: 'stream_signing_keys', methods: ['POST'], path: '/accounts/*/stream/keys', revocable: true },
  // A signed playback token, made with a signing key (it expires; it cannot be revoked).
  { kind: 'stream_signing_keys', methods: ['POST'], path: '/accounts/*/stream/*/token' },
  // Calls apps answer with their `secret`, TURN keys with their `key` (and their `uid`).
  { kind: 'calls_secrets', methods: ['POST'], path: '/accounts/*/calls/apps', revocable: true },
  { kind: 'calls_secrets', methods: ['POST'], path: '/accounts/*/calls/turn_keys', revocable: true },
  { kind: 'calls_secrets', methods: WRITES, path: '/accounts/*/calls/apps/**' },
  { kind: 'calls_secrets', methods: WRITES, path: '/accounts/*/calls/turn_keys/**' },
  // The listing returns every key's `value`; a PUT creates one (and answers with the listing).
  { kind: 'images_signing_keys', methods: ['GET', ...WRITES], path: '/accounts/*/images/v1/keys/**' },
  // Reads and writes that answer with another service's secret (creating, showing, rotating it).
  { kind: 'service_secrets', methods: ['GET', 'POST', 'PUT'], path: '/accounts/*/challenges/widgets/**' },
  { kind: 'service_secrets', methods: ['GET', 'POST', 'PUT'], path: '/accounts/*/secondary_dns/tsigs/**' },
  { kind: 'service_secrets', methods: ['POST'], path: '/accounts/*/magic/ipsec_tunnels/*/psk_generate' },
  { kind: 'service_secrets', methods: ['GET', 'POST', 'PUT'], path: '/accounts/*/stream/live_inputs/**' },
  {
    kind: 'service_secrets',
    methods: ['GET', 'POST', 'PUT'],
    path: '/accounts/*/alerting/v3/destinations/webhooks/**',
  },
  // Open operations whose answers show a secret: only the named fields are withheld.
  {
    kind: 'service_secrets',
    methods: ['DELETE'],
    path: '/accounts/*/challenges/widgets/*',
    shows: ['secret'],
  },
  ...['/accounts/*', '/zones/*'].flatMap((owner): GuardedOperation[] => [
    {
      kind: 'service_secrets',
      methods: ['GET', ...WRITES],
      path: `${owner}/access/apps/**`,
      // A SaaS application's OIDC client secret; the credentials of its SCIM provisioning.
      shows: ['client_secret', 'password', 'token'],
    },
    {
      kind: 'service_secrets',
      methods: ['GET', ...WRITES],
      path: `${owner}/access/identity_providers/**`,
      // The IdP's OAuth client secret; the SCIM secret Cloudflare generates.
      shows: ['client_secret', 'secret'],
    },
  ]),
  // The Exact Data Match secret of a DLP dataset (its other `secret` fields are booleans, kept).
  { kind: 'service_secrets', methods: WRITES, path: '/accounts/*/dlp/datasets/**', shows: ['secret'] },
  {
    kind: 'service_secrets',
    methods: ['GET', ...WRITES],
    path: '/accounts/*/pages/projects/**',
    shows: ['web_analytics_token'],
  },
  {
    kind: 'service_secrets',
    methods: ['GET', ...WRITES],
    path: '/zones/*/origin_tls_client_auth/**',
    shows: ['private_key'],
  },
];

/** Response fields withheld on a guarded operation, at any depth of `result`. */
const SECRET_FIELDS = new Set([
  'value',
  'secret',
  'client_secret',
  'secretAccessKey',
  'sessionToken',
  'token',
  'api_key',
  'key',
  'pem',
  'jwk',
  'private_key',
  'tunnel_secret',
  'credentials_file',
  'psk',
  'streamKey',
  'passphrase',
]);

export interface CredentialOperation {
  readonly kind: CredentialKind;
  readonly revocable: boolean;
  /** Refused unless the tenant policy allows the kind (false: open, its secrets withheld). */
  readonly guarded: boolean;
  /** The fields of the answer withheld, at any depth of `result`. */
  readonly fields: ReadonlySet<string>;
}

const CATALOG = GUARDED.map((entry) => ({
  entry,
  pattern: compilePattern(entry.path),
  operation: {
    kind: entry.kind,
    revocable: entry.revocable === true,
    guarded: entry.shows === undefined,
    fields: entry.shows ? new Set(entry.shows) : SECRET_FIELDS,
  } satisfies CredentialOperation,
}));

/**
 * The credential operation a request is (guarded, or open with secrets withheld), or null. Takes
 * a canonical path; literals match ignoring case.
 */
export function credentialOperation(request: {
  readonly method: string;
  readonly path: string;
}): CredentialOperation | null {
  const method = request.method.toUpperCase();
  const subject = pathSubject(pathSegments(request.path));
  for (const { entry, pattern, operation } of CATALOG) {
    if (entry.methods.includes(method) && matchPattern(pattern, subject, 'fold-case')) return operation;
  }
  return null;
}

export function credentialKindAllowed(
  policy: CredentialOperationsPolicy | undefined,
  kind: CredentialKind,
): boolean {
  return policy?.allow?.includes(kind) === true;
}

export function credentialSecretsRevealed(
  policy: CredentialOperationsPolicy | undefined,
  kind: CredentialKind,
): boolean {
  return policy?.reveal_secrets?.includes(kind) === true;
}

export function withheldMarker(kind: CredentialKind): string {
  return `[withheld by Warden: the tenant policy does not reveal ${kind} secrets (credential_operations.reveal_secrets)]`;
}

interface Withholding {
  readonly fields: ReadonlySet<string>;
  readonly marker: string;
  readonly withheld: string[];
}

function withhold(value: unknown, at: string, w: Withholding): unknown {
  if (Array.isArray(value)) return value.map((item, i) => withhold(item, `${at}[${i}]`, w));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    // A secret is a string (or an object: a credentials file); a flag or a count of the same name is kept.
    if (w.fields.has(key) && (typeof field === 'string' || (typeof field === 'object' && field !== null))) {
      out[key] = w.marker;
      w.withheld.push(`${at}.${key}`);
    } else {
      out[key] = withhold(field, `${at}.${key}`, w);
    }
  }
  return out;
}

/**
 * The response with the secrets of a credential operation replaced by a marker: a string
 * `result` of a guarded operation (a rolled token value, a tunnel token) and every field of
 * the operation's `fields` in it. `withheld` lists what was replaced (`result.value`).
 */
export function withholdCredentialSecrets<T extends { readonly result?: unknown }>(
  response: T,
  operation: Pick<CredentialOperation, 'kind' | 'guarded' | 'fields'>,
): { readonly response: T; readonly withheld: readonly string[] } {
  const w: Withholding = { fields: operation.fields, marker: withheldMarker(operation.kind), withheld: [] };
  const result =
    typeof response.result === 'string' && operation.guarded
      ? (w.withheld.push('result'), w.marker)
      : withhold(response.result, 'result', w);
  return { response: w.withheld.length > 0 ? { ...response, result } : response, withheld: w.withheld };
}

export interface MintedCredentialRef {
  readonly kind: CredentialKind;
  /** Cloudflare's id of what was created. */
  readonly upstreamId: string;
  /** `DELETE` here revokes it, with the credential that created it. */
  readonly revokePath: string;
}

const UPSTREAM_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** What a successful revocable creation made (from the response before anything is withheld), or null. */
export function mintedCredential(
  operation: Pick<CredentialOperation, 'kind' | 'revocable'>,
  canonicalPath: string,
  response: { readonly success: boolean; readonly result?: unknown },
): MintedCredentialRef | null {
  if (!operation.revocable || !response.success) return null;
  // Most answer with `id`; Calls apps and TURN keys with `uid`.
  const created =
    typeof response.result === 'object' && response.result !== null
      ? (response.result as { id?: unknown; uid?: unknown })
      : undefined;
  const id = created?.id ?? created?.uid;
  if (typeof id !== 'string' || !UPSTREAM_ID.test(id)) return null;
  return { kind: operation.kind, upstreamId: id, revokePath: `${canonicalPath}/${id}` };
}
