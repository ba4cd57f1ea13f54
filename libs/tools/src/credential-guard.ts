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
  stream_signing_keys: 'Stream signing keys',
  calls_secrets: 'Calls (Realtime) app secrets and TURN keys: create, edit, delete',
  images_signing_keys: 'Images URL-signing keys: list (their values), create, delete',
  service_secrets:
    "Other services' secrets Cloudflare issues or shows: Turnstile widget secrets, secondary DNS TSIG keys, IPsec pre-shared keys, Stream live-input keys, alert webhook secrets",
};

interface GuardedOperation {
  readonly kind: CredentialKind;
  readonly methods: readonly string[];
  readonly path: string;
  /** A POST here creates a credential that `DELETE <path>/<result.id>` revokes. */
  readonly revocable?: true;
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
}

/** The guarded operation a request is, or null. Takes a canonical path; literals match ignoring case. */
export function credentialOperation(request: {
  readonly method: string;
  readonly path: string;
}): CredentialOperation | null {
  const method = request.method.toUpperCase();
  const subject = pathSubject(pathSegments(request.path));
  for (const entry of GUARDED) {
    if (entry.methods.includes(method) && matchPattern(compilePattern(entry.path), subject, 'fold-case')) {
      return { kind: entry.kind, revocable: entry.revocable === true };
    }
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

function withhold(value: unknown, at: string, marker: string, withheld: string[]): unknown {
  if (Array.isArray(value)) return value.map((item, i) => withhold(item, `${at}[${i}]`, marker, withheld));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    if (SECRET_FIELDS.has(key) && field !== null && field !== undefined) {
      out[key] = marker;
      withheld.push(`${at}.${key}`);
    } else {
      out[key] = withhold(field, `${at}.${key}`, marker, withheld);
    }
  }
  return out;
}

/**
 * The response with the secrets of a credential operation replaced by a marker: a string
 * `result` (a rolled token value, a tunnel token) and every secret-named field in it.
 * `withheld` lists what was replaced (`result.value`), for the audit trail.
 */
export function withholdCredentialSecrets<T extends { readonly result?: unknown }>(
  response: T,
  kind: CredentialKind,
): { readonly response: T; readonly withheld: readonly string[] } {
  const marker = withheldMarker(kind);
  const withheld: string[] = [];
  const result =
    typeof response.result === 'string'
      ? (withheld.push('result'), marker)
      : withhold(response.result, 'result', marker, withheld);
  return { response: withheld.length > 0 ? { ...response, result } : response, withheld };
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
  operation: CredentialOperation,
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
