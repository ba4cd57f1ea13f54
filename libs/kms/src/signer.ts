/**
 * Signs what must stay provable even against whoever controls the database (the audit trail's
 * checkpoints): the private key lives in a KMS or in the local key file, never in PostgreSQL,
 * so a rewritten history cannot be signed again.
 */
export type SignatureAlgorithm = 'ED25519' | 'ECDSA_SHA_256' | 'RSASSA_PSS_SHA_256' | 'ED25519_SHA_512';

export const SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = [
  'ED25519',
  'ECDSA_SHA_256',
  'RSASSA_PSS_SHA_256',
  'ED25519_SHA_512',
];

export interface Signature {
  /** The signing key: `local-ed25519:<fingerprint>` or a KMS key ARN. */
  readonly keyId: string;
  readonly algorithm: SignatureAlgorithm;
  readonly signature: Buffer;
}

/**
 * `valid`: the key signed exactly this message. `invalid`: it did not (message or signature
 * changed). `unknown_key`: this verifier cannot get the named key's public key (another key
 * file, a deleted KMS key), so nothing can be said.
 */
export type VerifyResult = 'valid' | 'invalid' | 'unknown_key';

export interface SigningPublicKey {
  readonly keyId: string;
  readonly algorithm: SignatureAlgorithm;
  /** SubjectPublicKeyInfo, PEM: what an auditor needs to check signatures without Warden. */
  readonly publicKeyPem: string;
}

export interface Signer {
  readonly provider: 'local' | 'aws';
  /** Throws `unavailable` when the key service cannot sign now. */
  sign(message: Buffer): Promise<Signature>;
  /** Throws `unavailable` when the key service cannot be asked (the answer is unknown). */
  verify(message: Buffer, signature: Signature): Promise<VerifyResult>;
  /** The key new signatures are made with (created on first use for the local file). */
  publicKey(): Promise<SigningPublicKey>;
}
