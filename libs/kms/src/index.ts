export { canonicalContext } from './key-provider.ts';
export type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './key-provider.ts';
export { createLocalKeyProvider } from './local-key-provider.ts';
export { addKeyVersion, loadOrCreateKeyRing, readKeyRing, removeKeyVersion } from './local-key-file.ts';
export type { LocalKeyRing, LocalKeyVersion } from './local-key-file.ts';
export { createAwsKmsKeyProvider } from './aws-kms-key-provider.ts';
export type { AwsKmsOptions } from './aws-kms-key-provider.ts';
