import { KMSClient } from '@aws-sdk/client-kms';
import { WardenError } from '@warden/core';

/** How to reach AWS KMS (or a KMS-compatible endpoint), shared by the key provider and the signer. */
export interface AwsKmsConnection {
  region?: string;
  /** A KMS-compatible endpoint (tests, VPC endpoints). */
  endpoint?: string;
  /** Explicit credentials; otherwise the AWS SDK's default provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  maxAttempts?: number;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
}

export function createKmsClient(options: AwsKmsConnection): KMSClient {
  return new KMSClient({
    ...(options.region ? { region: options.region } : {}),
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: {
      connectionTimeout: options.connectionTimeoutMs ?? 2_000,
      requestTimeout: options.requestTimeoutMs ?? 5_000,
    },
  });
}

/** Answers that mean "this key will never do this": not an outage. */
const INTEGRITY_ERRORS = new Set([
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'InvalidKeyUsageException',
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
  // A symmetric key asked for a public key, or a key spec that cannot do the operation.
  'UnsupportedOperationException',
]);

export function isKmsIntegrityError(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' && INTEGRITY_ERRORS.has(name);
}

/** `refused` names what KMS refused (the data key, the signing key) in the integrity error. */
export function mapKmsError(operation: string, error: unknown, refused: string): WardenError {
  const name = (error as { name?: unknown } | null)?.name;
  if (isKmsIntegrityError(error)) {
    return new WardenError('integrity_failure', `KMS ${operation} refused ${refused} (${String(name)})`);
  }
  // Outage, throttling, access denied or network: a dependency failure. The SDK's own
  // message can include request ids and endpoints, but never key material.
  return new WardenError(
    'unavailable',
    `KMS ${operation} failed${typeof name === 'string' ? ` (${name})` : ''}; retry shortly`,
    { dependency: 'kms' },
    { cause: error },
  );
}

export async function kmsCall<T>(operation: string, refused: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw mapKmsError(operation, error, refused);
  }
}
