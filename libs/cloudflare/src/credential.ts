/** A Cloudflare credential as the vault holds it. Never logged, never returned. */
export type CloudflareCredential =
  | { readonly type: 'api_token'; readonly apiToken: string }
  | { readonly type: 'global_api_key'; readonly email: string; readonly apiKey: string };

export interface CloudflareAccount {
  readonly id: string;
  readonly name: string;
}

/** What verification learned about a credential; stored beside the sealed secret. */
export interface VerifiedCredential {
  readonly tokenKind: 'user' | 'account';
  readonly userId: string | null;
  readonly accounts: readonly CloudflareAccount[];
  readonly tokenId: string | null;
  /** `active` for a usable credential (verification refuses anything else). */
  readonly tokenStatus: string;
  readonly expiresOn: Date | null;
}

/** Request headers that carry the credential; set only in the parent process, right before the call. */
export function authHeaders(credential: CloudflareCredential): Record<string, string> {
  return credential.type === 'api_token'
    ? { authorization: `Bearer ${credential.apiToken}` }
    : { 'x-auth-email': credential.email, 'x-auth-key': credential.apiKey };
}

/** Every string of a credential, for leak checks (logs, errors, results). */
export function credentialSecrets(credential: CloudflareCredential): string[] {
  return credential.type === 'api_token' ? [credential.apiToken] : [credential.apiKey];
}
