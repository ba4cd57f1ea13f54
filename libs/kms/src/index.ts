export { canonicalContext } from './key-provider.ts';
export type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './key-provider.ts';
export { createLocalKeyProvider } from './local-key-provider.ts';
export {
  addKeyVersion,
  loadOrCreateKeyRing,
  loadOrCreateSigningKey,
  readKeyRing,
  removeKeyVersion,
} from './local-key-file.ts';
export type { LocalKeyRing, LocalKeyVersion, LocalSigningKey } from './local-key-file.ts';
export { createAwsKmsKeyProvider } from './aws-kms-key-provider.ts';
export type { AwsKmsOptions } from './aws-kms-key-provider.ts';
export type { AwsKmsConnection } from './aws-kms-client.ts';
export { SIGNATURE_ALGORITHMS } from './signer.ts';
export type { Signature, SignatureAlgorithm, Signer, SigningPublicKey, VerifyResult } from './signer.ts';
export { createLocalSigner } from './local-signer.ts';
export { createAwsKmsSigner } from './aws-kms-signer.ts';
export type { AwsKmsSignerOptions } from './aws-kms-signer.ts';
