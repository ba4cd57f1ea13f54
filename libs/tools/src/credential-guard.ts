import { canonicalizePath, pathSegments } from './canonical-path.ts';
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
  'certificates',
  'account_members',
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
  tunnel_tokens:
    "Cloudflare Tunnel and WARP Connector: creation (its secret), setting a tunnel's secret, run and management tokens",
  stream_signing_keys: 'Stream signing keys, and the signed playback tokens made with them',
  calls_secrets: 'Calls (Realtime) app secrets and TURN keys: list, read, create, edit, delete',
  images_signing_keys: 'Images URL-signing keys: list (their values), create, delete',
  certificates:
    'Certificates Cloudflare signs or trusts for the agent: API Shield (mTLS) client certificates, Origin CA certificates, client-certificate CAs uploaded for Access, API Shield or hostnames',
  account_members:
    'Account members: inviting one (a dashboard login of its own); changing or removing one is refused whatever the policy',
  service_secrets:
    "Other services' secrets Cloudflare issues or shows: Turnstile widget secrets, secondary DNS TSIG keys, IPsec pre-shared keys (generated or set), Stream live-input keys and webhook secret, alert webhook secrets, WARP override codes, Workers tail sessions started with cloudflare.request (their WebSocket URL reads the Worker's events; tail.worker needs no allowance); and, withheld from answers that are otherwise open, Access application (SaaS, SCIM) and identity provider secrets, DLP dataset secrets, Pages Web Analytics tokens and secret environment variables, Logpush destination credentials, origin TLS client-auth private keys, D1 export URLs, the Zaraz debug key",
};

interface GuardedOperation {
  readonly kind: CredentialKind;
  readonly methods: readonly string[];
  readonly path: string;
  /**
   * What revokes what a success here made or showed, with the credential that made it:
   * `child`: a POST creates a credential that `DELETE <path>/<result.id>` revokes;
   * `self`: a PUT creates one at the path itself, which `DELETE <path>` revokes;
   * `again`: the request replaced a credential's secret, and the same request with `againBody`
   * replaces it once more (the value the agent saw dies); recorded only when the secret was
   * revealed, so a value the agent never saw is not rolled for nothing.
   */
  readonly revokes?: 'child' | 'self' | 'again';
  readonly againBody?: Readonly<Record<string, unknown>>;
  /**
   * Not a credential operation but one whose answer shows a secret (configuration holding a
   * secret someone set or Cloudflare generated): open whatever the policy, and only these
   * fields of its answer are withheld unless the kind's secrets are revealed.
   */
  readonly shows?: readonly string[];
  /** Fields withheld from a guarded operation's answer beside the secret fields every one has. */
  readonly withholds?: readonly string[];
  /**
   * The operation documents `?validate_only=true` (validated, nothing persisted): such a request
   * replaced nothing to revoke. Elsewhere Cloudflare ignores the parameter, and so does Warden.
   */
  readonly validateOnly?: true;
}

const WRITES = ['POST', 'PUT', 'PATCH', 'DELETE'];

/** In `shows`: `value` of an object whose `type` is `secret_text` (an environment variable). */
const SECRET_TEXT_VALUE = 'value of a secret_text';
/** In `shows`: the credential parameters of a Logpush `destination_conf` (keys, SAS, headers). */
const DESTINATION_CREDENTIALS = 'destination_conf credentials';
/** Query parameters of a destination that hold a credential (names compared decoded, any case). */
const CREDENTIAL_PARAMETER = /^(?:secret-access-key|sig|api-key|header_.*)$/i;

/**
 * A Logpush `destination_conf` with its credentials replaced by `marker`: parameters that hold
 * one (an S3 or R2 secret key, an Azure SAS signature, an API key, any header), the password of
 * a URL's user information, and a Sumo Logic collector's code.
 */
function withoutDestinationCredentials(conf: string, marker: string): string {
  const query = conf.indexOf('?');
  const [base, params] = query === -1 ? [conf, null] : [conf.slice(0, query), conf.slice(query + 1)];
  const address = base
    .replace(/^([a-z0-9+.-]+:\/\/)[^/@]*@/i, `$1${marker}@`)
    .replace(/(\/receiver\/v1\/http\/)[^/?#]+/i, `$1${marker}`);
  if (params === null) return address;
  const kept = params.split('&').map((param) => {
    const eq = param.indexOf('=');
    if (eq === -1) return param;
    let name = param.slice(0, eq);
    try {
      name = decodeURIComponent(name);
    } catch {
      // Not valid percent-encoding: compared as written.
    }
    return CREDENTIAL_PARAMETER.test(name) ? `${param.slice(0, eq)}=${marker}` : param;
  });
  return `${address}?${kept.join('&')}`;
}

/** First match wins: the revocable creations come before the broader entries of their kind. */
const GUARDED: readonly GuardedOperation[] = [
  { kind: 'api_tokens', methods: ['POST'], path: '/user/tokens', revokes: 'child' },
  { kind: 'api_tokens', methods: ['POST'], path: '/accounts/*/tokens', revokes: 'child' },
  { kind: 'api_tokens', methods: ['PUT'], path: '/user/tokens/*/value', revokes: 'again', againBody: {} },
  {
    kind: 'api_tokens',
    methods: ['PUT'],
    path: '/accounts/*/tokens/*/value',
    revokes: 'again',
    againBody: {},
  },
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
    revokes: 'child',
  },
  {
    kind: 'access_service_tokens',
    methods: ['POST'],
    path: '/zones/*/access/service_tokens',
    revokes: 'child',
  },
  // Rotating with no body expires the previous secret at once.
  ...['/accounts/*', '/zones/*'].map((owner): GuardedOperation => ({
    kind: 'access_service_tokens',
    methods: ['POST'],
    path: `${owner}/access/service_tokens/*/rotate`,
    revokes: 'again',
    againBody: {},
  })),
  { kind: 'access_service_tokens', methods: ['POST'], path: '/accounts/*/access/service_tokens/*/*' },
  { kind: 'access_service_tokens', methods: ['POST'], path: '/zones/*/access/service_tokens/*/*' },
  { kind: 'tunnel_tokens', methods: ['GET'], path: '/accounts/*/cfd_tunnel/*/token' },
  { kind: 'tunnel_tokens', methods: ['GET'], path: '/accounts/*/warp_connector/*/token' },
  // Creating a tunnel issues its secret (and its run token); a management token is one too.
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/cfd_tunnel' },
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/warp_connector' },
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/tunnels' },
  { kind: 'tunnel_tokens', methods: ['POST'], path: '/accounts/*/cfd_tunnel/*/management' },
  // An edit can set `tunnel_secret`, the password that runs a locally-managed tunnel.
  { kind: 'tunnel_tokens', methods: ['PATCH', 'PUT'], path: '/accounts/*/cfd_tunnel/*' },
  { kind: 'tunnel_tokens', methods: ['PATCH', 'PUT'], path: '/accounts/*/warp_connector/*' },
  { kind: 'stream_signing_keys', methods: ['POST'], path: '/accounts/*/stream/keys', revokes: 'child' },
  // A signed playback token, made with a signing key (it expires; it cannot be revoked).
  { kind: 'stream_signing_keys', methods: ['POST'], path: '/accounts/*/stream/*/token' },
  // Calls apps answer with their `secret`, TURN keys with their `key` (and their `uid`); the
  // document types the listings and reads as the bare secrets ("Bearer token").
  { kind: 'calls_secrets', methods: ['POST'], path: '/accounts/*/calls/apps', revokes: 'child' },
  { kind: 'calls_secrets', methods: ['POST'], path: '/accounts/*/calls/turn_keys', revokes: 'child' },
  { kind: 'calls_secrets', methods: ['GET', ...WRITES], path: '/accounts/*/calls/apps/**' },
  { kind: 'calls_secrets', methods: ['GET', ...WRITES], path: '/accounts/*/calls/turn_keys/**' },
  // The listing returns every key's `value`; a PUT creates one by name (answering the listing).
  { kind: 'images_signing_keys', methods: ['PUT'], path: '/accounts/*/images/v1/keys/*', revokes: 'self' },
  { kind: 'images_signing_keys', methods: ['GET', ...WRITES], path: '/accounts/*/images/v1/keys/**' },
  // Cloudflare's CA signs the agent's CSR: a certificate that passes the zone's mTLS rules (a
  // PATCH reactivates a revoked one); an Origin CA certificate for the agent's key.
  { kind: 'certificates', methods: ['POST'], path: '/zones/*/client_certificates', revokes: 'child' },
  { kind: 'certificates', methods: ['PATCH', 'PUT'], path: '/zones/*/client_certificates/*' },
  { kind: 'certificates', methods: ['POST'], path: '/certificates', revokes: 'child' },
  // A CA of the agent's trusted for client certificates: Access, API Shield, per hostname.
  { kind: 'certificates', methods: ['POST'], path: '/accounts/*/access/certificates', revokes: 'child' },
  { kind: 'certificates', methods: ['POST'], path: '/zones/*/access/certificates', revokes: 'child' },
  { kind: 'certificates', methods: ['PUT', 'PATCH'], path: '/accounts/*/access/certificates/*' },
  { kind: 'certificates', methods: ['PUT', 'PATCH'], path: '/zones/*/access/certificates/*' },
  { kind: 'certificates', methods: ['POST'], path: '/accounts/*/mtls_certificates', revokes: 'child' },
  { kind: 'certificates', methods: ['PUT'], path: '/zones/*/certificate_authorities/hostname_associations' },
  // A member invited (a dashboard login that is not the agent's token). Changing or removing a
  // member is refused whatever the policy (see `changesOwnAccess`).
  { kind: 'account_members', methods: ['POST'], path: '/accounts/*/members', revokes: 'child' },

  // Reads and writes that answer with another service's secret (creating, showing, rotating it).
  {
    kind: 'service_secrets',
    methods: ['POST'],
    path: '/accounts/*/challenges/widgets/*/rotate_secret',
    revokes: 'again',
    againBody: { invalidate_immediately: true },
  },
  { kind: 'service_secrets', methods: ['GET', 'POST', 'PUT'], path: '/accounts/*/challenges/widgets/**' },
  { kind: 'service_secrets', methods: ['GET', 'POST', 'PUT'], path: '/accounts/*/secondary_dns/tsigs/**' },
  {
    kind: 'service_secrets',
    methods: ['POST'],
    path: '/accounts/*/magic/ipsec_tunnels/*/psk_generate',
    revokes: 'again',
    againBody: {},
    validateOnly: true,
  },
  // A tail session's WebSocket URL reads the Worker's live events with no credential, and
  // unscrubbed: agents tail through `tail.worker` (scrubbed, deleted when the call ends). A tail
  // made with `cloudflare.request` is recorded and deleted on offboarding; listings hide the URLs.
  // Besides a Worker's, the tails wrangler starts outside the API document: a service
  // environment, a Pages deployment, a Worker of a dispatch namespace (Workers for Platforms).
  ...[
    '/accounts/*/workers/scripts/*/tails',
    '/accounts/*/workers/services/*/environments/*/tails',
    '/accounts/*/pages/projects/*/deployments/*/tails',
    '/accounts/*/workers/dispatch/namespaces/*/scripts/*/tails',
  ].flatMap((path): GuardedOperation[] => [
    { kind: 'service_secrets', methods: ['POST'], path, revokes: 'child', withholds: ['url'] },
    { kind: 'service_secrets', methods: ['GET'], path, shows: ['url'] },
  ]),
  // Creating or editing IPsec tunnels can set their pre-shared key (`psk`) to one the agent chose.
  { kind: 'service_secrets', methods: ['POST', 'PUT'], path: '/accounts/*/magic/ipsec_tunnels' },
  { kind: 'service_secrets', methods: ['PUT'], path: '/accounts/*/magic/ipsec_tunnels/*' },
  // Codes that switch WARP (and its Zero Trust enforcement) off on a device for hours.
  { kind: 'service_secrets', methods: ['GET'], path: '/accounts/*/devices/*/override_codes' },
  // The secret that signs Stream's webhook notifications.
  { kind: 'service_secrets', methods: ['GET', 'PUT'], path: '/accounts/*/stream/webhook' },
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
    shows: ['web_analytics_token', SECRET_TEXT_VALUE],
  },
  ...['/accounts/*', '/zones/*'].map((owner): GuardedOperation => ({
    kind: 'service_secrets',
    methods: ['GET', 'POST', 'PUT'],
    path: `${owner}/logpush/**`,
    shows: [DESTINATION_CREDENTIALS],
  })),
  // Headers sent to origins (an Authorization, an Access service token's secret).
  {
    kind: 'service_secrets',
    methods: ['GET', ...WRITES],
    path: '/accounts/*/load_balancers/monitors/**',
    shows: ['header'],
  },
  {
    kind: 'service_secrets',
    methods: ['GET', ...WRITES],
    path: '/user/load_balancers/monitors/**',
    shows: ['header'],
  },
  {
    kind: 'service_secrets',
    methods: ['GET', ...WRITES],
    path: '/zones/*/healthchecks/**',
    shows: ['header'],
  },
  // The private key of a custom hostname's uploaded certificate.
  {
    kind: 'service_secrets',
    methods: ['GET', ...WRITES],
    path: '/zones/*/custom_hostnames/**',
    shows: ['custom_key'],
  },
  // A presigned URL to the whole database, for an hour.
  {
    kind: 'service_secrets',
    methods: ['POST'],
    path: '/accounts/*/d1/database/*/export',
    shows: ['signed_url'],
  },
  {
    kind: 'service_secrets',
    methods: ['GET', 'PUT'],
    path: '/zones/*/settings/zaraz/**',
    shows: ['debugKey'],
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
  // A live input's WebRTC publish URL holds its key.
  'webRTC',
]);

export interface CredentialOperation {
  readonly kind: CredentialKind;
  readonly revokes: 'child' | 'self' | 'again' | null;
  /** The body of the request that replaces the secret once more (`revokes: 'again'`). */
  readonly againBody: Readonly<Record<string, unknown>> | null;
  /** Refused unless the tenant policy allows the kind (false: open, its secrets withheld). */
  readonly guarded: boolean;
  /** The fields of the answer withheld, at any depth of `result`. */
  readonly fields: ReadonlySet<string>;
  /** `?validate_only=true` makes the request a validation (see `GuardedOperation.validateOnly`). */
  readonly validateOnly: boolean;
}

const CATALOG = GUARDED.map((entry) => ({
  entry,
  pattern: compilePattern(entry.path),
  operation: {
    kind: entry.kind,
    revokes: entry.revokes ?? null,
    againBody: entry.againBody ?? null,
    guarded: entry.shows === undefined,
    fields: entry.shows
      ? new Set(entry.shows)
      : entry.withholds
        ? new Set([...SECRET_FIELDS, ...entry.withholds])
        : SECRET_FIELDS,
    validateOnly: entry.validateOnly === true,
  } satisfies CredentialOperation,
}));

/**
 * Whether a write to `path` (canonical) may change the access of the token Warden holds
 * (`tokenId`): the token itself or below it (`/user/tokens/{id}/value`), the memberships of its
 * user (`/memberships/**`, only ever the token user's own; `/user/organizations/**`, leaving an
 * account), any account member (`…/members/{id}`: Warden cannot tell the token user's own entry
 * from another's without asking) and the account's IAM (`…/iam/**`).
 */
export function changesOwnAccess(path: string, tokenId: string | null): boolean {
  const segments = pathSegments(path).map((segment) => segment.toLowerCase());
  if (segments[0] === 'memberships') return true;
  // Leaving an account (`/user/organizations/{id}`), the members and the account's IAM (the
  // resource groups and user groups their policies name).
  if (segments[0] === 'user' && segments[1] === 'organizations') return true;
  if (segments[0] === 'accounts' && segments[2] === 'members' && segments.length >= 4) return true;
  if (segments[0] === 'accounts' && segments[2] === 'iam') return true;
  const at = segments[0] === 'user' ? 1 : segments[0] === 'accounts' ? 2 : -1;
  return (
    tokenId !== null && at > 0 && segments[at] === 'tokens' && segments[at + 1] === tokenId.toLowerCase()
  );
}

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

/** What replaces the secrets of something made that Warden could not record for revocation. */
export const UNRECORDABLE_MARKER =
  '[withheld by Warden: what this request made cannot be recorded for revocation on offboarding (Cloudflare answered no id Warden can use in a path, or its name in the request path is longer than 512 characters or not one plain path segment)]';

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
  const secretText = w.fields.has(SECRET_TEXT_VALUE) && (value as { type?: unknown }).type === 'secret_text';
  for (const [key, field] of Object.entries(value)) {
    // A secret is a string (or an object: a credentials file); a flag or a count of the same name is kept.
    const secret = typeof field === 'string' || (typeof field === 'object' && field !== null);
    if (secret && (w.fields.has(key) || (secretText && key === 'value'))) {
      out[key] = w.marker;
      w.withheld.push(`${at}.${key}`);
    } else if (
      key === 'destination_conf' &&
      typeof field === 'string' &&
      w.fields.has(DESTINATION_CREDENTIALS)
    ) {
      out[key] = withoutDestinationCredentials(field, w.marker);
      if (out[key] !== field) w.withheld.push(`${at}.${key}`);
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
  marker: string = withheldMarker(operation.kind),
): { readonly response: T; readonly withheld: readonly string[] } {
  const w: Withholding = { fields: operation.fields, marker, withheld: [] };
  // A guarded operation's answer may be the secret itself: a string, or a list of them.
  const bare = (value: unknown, at: string) =>
    typeof value === 'string' && operation.guarded ? (w.withheld.push(at), w.marker) : value;
  const result = Array.isArray(response.result)
    ? response.result.map((item: unknown, i) => bare(withhold(item, `result[${i}]`, w), `result[${i}]`))
    : bare(withhold(response.result, 'result', w), 'result');
  return { response: w.withheld.length > 0 ? { ...response, result } : response, withheld: w.withheld };
}

export interface MintedCredentialRef {
  readonly kind: CredentialKind;
  /** Cloudflare's id of what was made (or whose secret was replaced). */
  readonly upstreamId: string;
  /**
   * The request that revokes it, sent with the credential that made it: a DELETE of the
   * credential, or the request that replaces its secret once more (see `revokes`).
   */
  readonly revokeMethod: 'DELETE' | 'PUT' | 'POST';
  readonly revokePath: string;
}

/** An id Cloudflare answered with: only one that is safe in a path (it becomes one; no dot segment). */
const UPSTREAM_ID = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$/;
/** An id taken from the agent's own canonical path (already sent as it is): one segment. */
const PATH_ID = /^[!-.0-~]{1,512}$/;

/** What a revocable operation made that Warden cannot record: the guard withholds its secrets. */
export const UNRECORDABLE = 'unrecordable';

/**
 * What a successful revocable operation made (read from the response before anything is
 * withheld), null when it made nothing to revoke, or `UNRECORDABLE` when it made something
 * Warden cannot record: Cloudflare's answer has no id, or one not safe in a path (a `/`, a `.`
 * or `..` segment, other characters than letters, digits, `_`, `.`, `-`, more than 128 of them);
 * a name from the request path longer than 512 characters or outside one plain segment; or a
 * revocation path that would not be sent as it is (not canonical).
 * `revealed`: the agent sees the operation's secrets.
 */
export function mintedCredential(
  operation: Pick<CredentialOperation, 'kind' | 'revokes' | 'validateOnly'>,
  request: {
    readonly method: string;
    readonly path: string;
    readonly query?: Readonly<Record<string, string | number | boolean>> | undefined;
  },
  response: { readonly success: boolean; readonly result?: unknown },
  revealed: boolean,
): MintedCredentialRef | typeof UNRECORDABLE | null {
  if (!operation.revokes || !response.success) return null;
  const segments = request.path.split('/');
  // Recorded only with a revocation Warden will send as it is: its path already canonical.
  const made = (
    upstreamId: unknown,
    valid: RegExp,
    revokeMethod: MintedCredentialRef['revokeMethod'],
    revokePath: string,
  ) =>
    typeof upstreamId === 'string' && valid.test(upstreamId) && isCanonical(revokePath)
      ? { kind: operation.kind, upstreamId, revokeMethod, revokePath }
      : UNRECORDABLE;
  switch (operation.revokes) {
    case 'child': {
      // Most answer with `id`; Calls apps and TURN keys with `uid`.
      const created =
        typeof response.result === 'object' && response.result !== null
          ? (response.result as { id?: unknown; uid?: unknown })
          : undefined;
      const id = created?.id ?? created?.uid;
      return made(id, UPSTREAM_ID, 'DELETE', `${request.path}/${String(id)}`);
    }
    case 'self':
      // Made by name, it may have replaced a person's key: deleted only if the agent saw it.
      return revealed ? made(segments.at(-1), PATH_ID, 'DELETE', request.path) : null;
    case 'again': {
      // A value the agent never saw needs no new one; nor does a request only validated.
      if (!revealed || (operation.validateOnly && isTrue(request.query?.['validate_only']))) return null;
      const method = request.method.toUpperCase();
      return method === 'PUT' || method === 'POST'
        ? made(segments.at(-2), PATH_ID, method, request.path)
        : null;
    }
  }
}

/** `true` as the document spells it: any other spelling may be one Cloudflare does not take. */
function isTrue(value: string | number | boolean | undefined): boolean {
  return value === true || value === 'true';
}

function isCanonical(path: string): boolean {
  try {
    return canonicalizePath(path) === path;
  } catch {
    return false;
  }
}

/** The body of the request that revokes `minted` (none for a DELETE). */
export function revocationBody(minted: Pick<MintedCredentialRef, 'revokeMethod' | 'revokePath'>): unknown {
  if (minted.revokeMethod === 'DELETE') return undefined;
  return credentialOperation({ method: minted.revokeMethod, path: minted.revokePath })?.againBody ?? {};
}
