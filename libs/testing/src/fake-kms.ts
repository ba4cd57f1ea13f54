import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHash,
  generateKeyPairSync,
  privateEncrypt,
  publicDecrypt,
  randomBytes,
  randomUUID,
  sign,
  verify,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A KMS-compatible endpoint speaking the AWS JSON 1.1 protocol (`X-Amz-Target:
 * TrentService.<Operation>`), enough for @aws-sdk/client-kms: keys, aliases, data
 * keys, Decrypt/ReEncrypt bound to the encryption context, and AWS's error names.
 * Ciphertext blobs embed the key id, as real KMS blobs do, so Decrypt needs no KeyId.
 * Asymmetric SIGN_VERIFY keys (ECC_NIST_P256, RSA_2048/3072/4096, ECC_NIST_EDWARDS25519)
 * sign and verify with real key pairs (`Sign`, `Verify`, `GetPublicKey`).
 */
export type FakeKmsKeySpec =
  'SYMMETRIC_DEFAULT' | 'ECC_NIST_P256' | 'RSA_2048' | 'RSA_3072' | 'RSA_4096' | 'ECC_NIST_EDWARDS25519';

export interface FakeKms {
  readonly endpoint: string;
  readonly region: string;
  createKey(options?: { alias?: string; description?: string; keySpec?: FakeKmsKeySpec }): {
    keyId: string;
    arn: string;
  };
  /** Points an alias at another key (how operators switch the key-encryption key). */
  updateAlias(alias: string, keyId: string): void;
  disableKey(keyIdOrArn: string): void;
  enableKey(keyIdOrArn: string): void;
  /** Simulate an outage: every call answers 503 KMSInternalException (or drops the socket). */
  setDown(mode: false | 'error' | 'drop'): void;
  /** Calls per operation since start or the last reset. */
  calls(): Readonly<Record<string, number>>;
  resetCalls(): void;
  close(): Promise<void>;
}

interface KeyRecord {
  id: string;
  arn: string;
  keySpec: FakeKmsKeySpec;
  /** Symmetric keys only. */
  material: Buffer;
  /** Asymmetric (SIGN_VERIFY) keys only. */
  pair: { privateKey: KeyObject; publicKey: KeyObject } | null;
  enabled: boolean;
  description: string;
  createdAt: Date;
}

/** What each asymmetric key spec signs with, as AWS documents it. */
const SIGNING_ALGORITHMS: Record<Exclude<FakeKmsKeySpec, 'SYMMETRIC_DEFAULT'>, readonly string[]> = {
  ECC_NIST_P256: ['ECDSA_SHA_256'],
  RSA_2048: rsaAlgorithms(),
  RSA_3072: rsaAlgorithms(),
  RSA_4096: rsaAlgorithms(),
  ECC_NIST_EDWARDS25519: ['ED25519_SHA_512'],
};

function rsaAlgorithms(): string[] {
  return ['256', '384', '512'].flatMap((bits) => [`RSASSA_PSS_SHA_${bits}`, `RSASSA_PKCS1_V1_5_SHA_${bits}`]);
}

/** DER DigestInfo prefixes (RFC 8017, 9.2 note 1), to sign a precomputed digest with PKCS #1 v1.5. */
const DIGEST_INFO: Record<string, Buffer> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

const MAX_RAW_MESSAGE_BYTES = 4096;

class KmsError extends Error {
  readonly type: string;
  readonly status: number;
  constructor(type: string, message: string, status = 400) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

const MAGIC = Buffer.from('FKMS');
const ACCOUNT = '111122223333';

function contextAad(context: unknown): Buffer {
  if (context === undefined || context === null) return Buffer.alloc(0);
  if (typeof context !== 'object')
    throw new KmsError('ValidationException', 'EncryptionContext must be a map');
  const entries = Object.entries(context as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
  return Buffer.from(JSON.stringify(entries));
}

function blob(value: unknown, field: string): Buffer {
  if (typeof value !== 'string') throw new KmsError('ValidationException', `${field} is required`);
  return Buffer.from(value, 'base64');
}

export async function startFakeKms(options: { port?: number; region?: string } = {}): Promise<FakeKms> {
  const region = options.region ?? 'us-east-1';
  const keys = new Map<string, KeyRecord>();
  const aliases = new Map<string, string>();
  let calls: Record<string, number> = {};
  let down: false | 'error' | 'drop' = false;

  function resolve(keyIdOrAlias: unknown): KeyRecord {
    if (typeof keyIdOrAlias !== 'string' || keyIdOrAlias === '') {
      throw new KmsError('ValidationException', 'KeyId is required');
    }
    let id = keyIdOrAlias;
    const aliasArn = /^arn:aws:kms:[^:]+:\d+:(alias\/.+)$/.exec(id);
    if (aliasArn?.[1]) id = aliasArn[1];
    if (id.startsWith('alias/')) {
      const target = aliases.get(id);
      if (!target) throw new KmsError('NotFoundException', `Alias ${keyIdOrAlias} is not found.`);
      id = target;
    }
    const keyArn = /^arn:aws:kms:[^:]+:\d+:key\/(.+)$/.exec(id);
    if (keyArn?.[1]) id = keyArn[1];
    const key = keys.get(id);
    if (!key) throw new KmsError('NotFoundException', `Key '${keyIdOrAlias}' does not exist`);
    return key;
  }

  function usable(key: KeyRecord): KeyRecord {
    if (!key.enabled) throw new KmsError('DisabledException', `${key.arn} is disabled.`);
    return key;
  }

  function forEncryption(key: KeyRecord): KeyRecord {
    if (key.keySpec !== 'SYMMETRIC_DEFAULT') {
      throw new KmsError(
        'InvalidKeyUsageException',
        `${key.arn} key usage is SIGN_VERIFY, not ENCRYPT_DECRYPT.`,
      );
    }
    return key;
  }

  function forSigning(
    key: KeyRecord,
    algorithm: unknown,
  ): { pair: NonNullable<KeyRecord['pair']>; algorithm: string } {
    if (key.keySpec === 'SYMMETRIC_DEFAULT' || !key.pair) {
      throw new KmsError(
        'InvalidKeyUsageException',
        `${key.arn} key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY.`,
      );
    }
    if (typeof algorithm !== 'string')
      throw new KmsError('ValidationException', 'SigningAlgorithm is required');
    if (!SIGNING_ALGORITHMS[key.keySpec].includes(algorithm)) {
      throw new KmsError(
        'InvalidKeyUsageException',
        `Algorithm ${algorithm} is incompatible with key spec ${key.keySpec}.`,
      );
    }
    return { pair: key.pair, algorithm };
  }

  /** The message to sign or verify, as KMS reads `Message` with `MessageType` RAW or DIGEST. */
  function messageOf(input: Record<string, unknown>, algorithm: string): { bytes: Buffer; digest: boolean } {
    const bytes = blob(input.Message, 'Message');
    const type = input.MessageType ?? 'RAW';
    if (type === 'RAW') {
      if (bytes.length === 0 || bytes.length > MAX_RAW_MESSAGE_BYTES) {
        throw new KmsError(
          'ValidationException',
          `Message must be 1 to ${MAX_RAW_MESSAGE_BYTES} bytes; send a DIGEST for more`,
        );
      }
      return { bytes, digest: false };
    }
    if (type !== 'DIGEST') throw new KmsError('ValidationException', 'MessageType must be RAW or DIGEST');
    const hash = hashOf(algorithm);
    if (!hash || bytes.length !== createHash(hash).digest().length) {
      throw new KmsError(
        'ValidationException',
        `Digest length does not match the signing algorithm ${algorithm}`,
      );
    }
    return { bytes, digest: true };
  }

  function hashOf(algorithm: string): string | null {
    const bits = /_SHA_(256|384|512)$/.exec(algorithm)?.[1];
    return bits && !algorithm.startsWith('ED25519') ? `sha${bits}` : null;
  }

  function signMessage(
    pair: NonNullable<KeyRecord['pair']>,
    algorithm: string,
    message: { bytes: Buffer; digest: boolean },
  ): Buffer {
    const hash = hashOf(algorithm);
    if (algorithm === 'ED25519_SHA_512') {
      if (message.digest)
        throw new KmsError('ValidationException', 'ED25519_SHA_512 signs RAW messages only');
      return sign(null, message.bytes, pair.privateKey);
    }
    if (message.digest) {
      // Node signs a precomputed digest only through the raw RSA primitive (PKCS #1 v1.5).
      if (!algorithm.startsWith('RSASSA_PKCS1_V1_5') || !hash) {
        throw new KmsError(
          'UnsupportedOperationException',
          `the fake KMS signs DIGEST messages with RSASSA_PKCS1_V1_5 only; send RAW with ${algorithm}`,
        );
      }
      return privateEncrypt(
        { key: pair.privateKey, padding: constants.RSA_PKCS1_PADDING },
        Buffer.concat([DIGEST_INFO[hash] as Buffer, message.bytes]),
      );
    }
    return sign(hash, message.bytes, signingKeyOptions(pair.privateKey, algorithm));
  }

  function verifyMessage(
    pair: NonNullable<KeyRecord['pair']>,
    algorithm: string,
    message: { bytes: Buffer; digest: boolean },
    signature: Buffer,
  ): boolean {
    const hash = hashOf(algorithm);
    try {
      if (algorithm === 'ED25519_SHA_512') return verify(null, message.bytes, pair.publicKey, signature);
      if (message.digest) {
        if (!algorithm.startsWith('RSASSA_PKCS1_V1_5') || !hash) {
          throw new KmsError(
            'UnsupportedOperationException',
            `the fake KMS verifies DIGEST messages with RSASSA_PKCS1_V1_5 only`,
          );
        }
        const recovered = publicDecrypt(
          { key: pair.publicKey, padding: constants.RSA_PKCS1_PADDING },
          signature,
        );
        return recovered.equals(Buffer.concat([DIGEST_INFO[hash] as Buffer, message.bytes]));
      }
      return verify(hash, message.bytes, signingKeyOptions(pair.publicKey, algorithm), signature);
    } catch (error) {
      if (error instanceof KmsError) throw error;
      return false;
    }
  }

  function signingKeyOptions(key: KeyObject, algorithm: string) {
    if (algorithm.startsWith('RSASSA_PSS')) {
      // KMS uses a salt as long as the digest.
      return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST };
    }
    if (algorithm.startsWith('ECDSA')) return { key, dsaEncoding: 'der' as const };
    return { key };
  }

  function encrypt(key: KeyRecord, plaintext: Buffer, context: unknown): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.material, iv);
    cipher.setAAD(Buffer.concat([Buffer.from(key.id), contextAad(context)]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([MAGIC, Buffer.from(key.id), iv, body, cipher.getAuthTag()]);
  }

  function decrypt(
    ciphertext: Buffer,
    context: unknown,
    expectedKeyId: unknown,
  ): { key: KeyRecord; plaintext: Buffer } {
    if (ciphertext.length < 4 + 36 + 12 + 16 || !ciphertext.subarray(0, 4).equals(MAGIC)) {
      throw new KmsError('InvalidCiphertextException', 'The ciphertext is invalid.');
    }
    const key = keys.get(ciphertext.subarray(4, 40).toString());
    if (!key) throw new KmsError('InvalidCiphertextException', 'The ciphertext refers to an unknown key.');
    if (expectedKeyId !== undefined && resolve(expectedKeyId).id !== key.id) {
      throw new KmsError(
        'IncorrectKeyException',
        'The key ID in the request does not identify the key used to encrypt.',
      );
    }
    usable(key);
    const decipher = createDecipheriv('aes-256-gcm', key.material, ciphertext.subarray(40, 52));
    decipher.setAAD(Buffer.concat([Buffer.from(key.id), contextAad(context)]));
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    try {
      const plaintext = Buffer.concat([
        decipher.update(ciphertext.subarray(52, ciphertext.length - 16)),
        decipher.final(),
      ]);
      return { key, plaintext };
    } catch {
      throw new KmsError('InvalidCiphertextException', 'The ciphertext or encryption context is invalid.');
    }
  }

  function metadata(key: KeyRecord) {
    const asymmetric = key.keySpec !== 'SYMMETRIC_DEFAULT';
    return {
      AWSAccountId: ACCOUNT,
      KeyId: key.id,
      Arn: key.arn,
      Enabled: key.enabled,
      KeyState: key.enabled ? 'Enabled' : 'Disabled',
      KeyUsage: asymmetric ? 'SIGN_VERIFY' : 'ENCRYPT_DECRYPT',
      KeySpec: key.keySpec,
      ...(asymmetric
        ? { SigningAlgorithms: SIGNING_ALGORITHMS[key.keySpec as keyof typeof SIGNING_ALGORITHMS] }
        : {}),
      Description: key.description,
      CreationDate: key.createdAt.getTime() / 1000,
    };
  }

  function keyPair(keySpec: FakeKmsKeySpec): KeyRecord['pair'] {
    switch (keySpec) {
      case 'SYMMETRIC_DEFAULT':
        return null;
      case 'ECC_NIST_P256':
        return generateKeyPairSync('ec', { namedCurve: 'P-256' });
      case 'ECC_NIST_EDWARDS25519':
        return generateKeyPairSync('ed25519');
      case 'RSA_2048':
      case 'RSA_3072':
      case 'RSA_4096':
        return generateKeyPairSync('rsa', { modulusLength: Number(keySpec.slice(4)) });
    }
  }

  function createKey(
    description = '',
    alias?: string,
    keySpec: FakeKmsKeySpec = 'SYMMETRIC_DEFAULT',
  ): KeyRecord {
    const id = randomUUID();
    const key: KeyRecord = {
      id,
      arn: `arn:aws:kms:${region}:${ACCOUNT}:key/${id}`,
      keySpec,
      material: randomBytes(32),
      pair: keyPair(keySpec),
      enabled: true,
      description,
      createdAt: new Date(),
    };
    keys.set(id, key);
    if (alias) aliases.set(alias, id);
    return key;
  }

  function dataKeyLength(input: Record<string, unknown>): number {
    if (input.KeySpec === 'AES_256') return 32;
    if (input.KeySpec === 'AES_128') return 16;
    if (typeof input.NumberOfBytes === 'number' && input.NumberOfBytes >= 1 && input.NumberOfBytes <= 1024) {
      return input.NumberOfBytes;
    }
    throw new KmsError('ValidationException', 'Specify KeySpec or NumberOfBytes');
  }

  const operations: Record<string, (input: Record<string, unknown>) => unknown> = {
    CreateKey: (input) => {
      const spec = String(input.KeySpec ?? input.CustomerMasterKeySpec ?? 'SYMMETRIC_DEFAULT');
      if (spec !== 'SYMMETRIC_DEFAULT' && !(spec in SIGNING_ALGORITHMS)) {
        throw new KmsError('ValidationException', `KeySpec ${spec} is not supported by the fake KMS`);
      }
      const usage = input.KeyUsage ?? (spec === 'SYMMETRIC_DEFAULT' ? 'ENCRYPT_DECRYPT' : 'SIGN_VERIFY');
      if ((spec === 'SYMMETRIC_DEFAULT') !== (usage === 'ENCRYPT_DECRYPT')) {
        throw new KmsError(
          'ValidationException',
          `KeyUsage ${String(usage)} is not valid for KeySpec ${spec}`,
        );
      }
      return {
        KeyMetadata: metadata(createKey(String(input.Description ?? ''), undefined, spec as FakeKmsKeySpec)),
      };
    },
    CreateAlias: (input) => {
      const name = String(input.AliasName ?? '');
      if (!name.startsWith('alias/'))
        throw new KmsError('ValidationException', 'AliasName must start with alias/');
      if (aliases.has(name)) throw new KmsError('AlreadyExistsException', `${name} already exists`);
      aliases.set(name, resolve(input.TargetKeyId).id);
      return {};
    },
    UpdateAlias: (input) => {
      const name = String(input.AliasName ?? '');
      if (!aliases.has(name)) throw new KmsError('NotFoundException', `${name} is not found`);
      aliases.set(name, resolve(input.TargetKeyId).id);
      return {};
    },
    DescribeKey: (input) => ({ KeyMetadata: metadata(resolve(input.KeyId)) }),
    EnableKey: (input) => {
      resolve(input.KeyId).enabled = true;
      return {};
    },
    DisableKey: (input) => {
      resolve(input.KeyId).enabled = false;
      return {};
    },
    GenerateDataKey: (input) => {
      const key = forEncryption(usable(resolve(input.KeyId)));
      const plaintext = randomBytes(dataKeyLength(input));
      return {
        KeyId: key.arn,
        Plaintext: plaintext.toString('base64'),
        CiphertextBlob: encrypt(key, plaintext, input.EncryptionContext).toString('base64'),
      };
    },
    GenerateDataKeyWithoutPlaintext: (input) => {
      const key = forEncryption(usable(resolve(input.KeyId)));
      return {
        KeyId: key.arn,
        CiphertextBlob: encrypt(key, randomBytes(dataKeyLength(input)), input.EncryptionContext).toString(
          'base64',
        ),
      };
    },
    Encrypt: (input) => {
      const key = forEncryption(usable(resolve(input.KeyId)));
      return {
        KeyId: key.arn,
        CiphertextBlob: encrypt(key, blob(input.Plaintext, 'Plaintext'), input.EncryptionContext).toString(
          'base64',
        ),
      };
    },
    Decrypt: (input) => {
      const { key, plaintext } = decrypt(
        blob(input.CiphertextBlob, 'CiphertextBlob'),
        input.EncryptionContext,
        input.KeyId,
      );
      return {
        KeyId: key.arn,
        Plaintext: plaintext.toString('base64'),
        EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
    ReEncrypt: (input) => {
      const source = decrypt(
        blob(input.CiphertextBlob, 'CiphertextBlob'),
        input.SourceEncryptionContext,
        input.SourceKeyId,
      );
      const destination = forEncryption(usable(resolve(input.DestinationKeyId)));
      try {
        return {
          SourceKeyId: source.key.arn,
          KeyId: destination.arn,
          CiphertextBlob: encrypt(destination, source.plaintext, input.DestinationEncryptionContext).toString(
            'base64',
          ),
        };
      } finally {
        source.plaintext.fill(0);
      }
    },
    Sign: (input) => {
      const key = usable(resolve(input.KeyId));
      const { pair, algorithm } = forSigning(key, input.SigningAlgorithm);
      const signature = signMessage(pair, algorithm, messageOf(input, algorithm));
      return { KeyId: key.arn, Signature: signature.toString('base64'), SigningAlgorithm: algorithm };
    },
    Verify: (input) => {
      const key = usable(resolve(input.KeyId));
      const { pair, algorithm } = forSigning(key, input.SigningAlgorithm);
      const message = messageOf(input, algorithm);
      if (!verifyMessage(pair, algorithm, message, blob(input.Signature, 'Signature'))) {
        // As AWS does: an invalid signature is an error, not `SignatureValid: false`.
        throw new KmsError('KMSInvalidSignatureException', 'The signature is invalid.');
      }
      return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: algorithm };
    },
    GetPublicKey: (input) => {
      const key = usable(resolve(input.KeyId));
      if (key.keySpec === 'SYMMETRIC_DEFAULT' || !key.pair) {
        throw new KmsError(
          'UnsupportedOperationException',
          `${key.arn} is a symmetric key; it has no public key.`,
        );
      }
      return {
        KeyId: key.arn,
        PublicKey: key.pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
        KeySpec: key.keySpec,
        CustomerMasterKeySpec: key.keySpec,
        KeyUsage: 'SIGN_VERIFY',
        SigningAlgorithms: SIGNING_ALGORITHMS[key.keySpec],
      };
    },
  };

  function send(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/x-amz-json-1.1',
      'content-length': Buffer.byteLength(text),
      'x-amzn-requestid': randomUUID(),
    });
    res.end(text);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (down === 'drop') {
      req.socket.destroy();
      return;
    }
    if (down === 'error') {
      send(res, 500, {
        __type: 'KMSInternalException',
        message: 'The service is unavailable (fake outage).',
      });
      return;
    }
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : '';
    try {
      if (req.method !== 'POST') throw new KmsError('UnknownOperationException', 'POST only', 405);
      if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 Credential=')) {
        throw new KmsError('MissingAuthenticationTokenException', 'Request is missing Authentication Token');
      }
      const handler = operations[operation];
      if (!handler) throw new KmsError('UnknownOperationException', `Unsupported operation ${target}`);
      calls[operation] = (calls[operation] ?? 0) + 1;
      let input: Record<string, unknown>;
      try {
        input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      } catch {
        throw new KmsError('SerializationException', 'Request body is not JSON');
      }
      send(res, 200, handler(input));
    } catch (error) {
      if (error instanceof KmsError) send(res, error.status, { __type: error.type, message: error.message });
      else send(res, 500, { __type: 'KMSInternalException', message: 'internal error' });
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolveListen) => server.listen(options.port ?? 0, '127.0.0.1', resolveListen));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    createKey(opts = {}) {
      const key = createKey(opts.description, opts.alias, opts.keySpec);
      return { keyId: key.id, arn: key.arn };
    },
    updateAlias(alias, keyId) {
      aliases.set(alias, resolve(keyId).id);
    },
    disableKey(keyId) {
      resolve(keyId).enabled = false;
    },
    enableKey(keyId) {
      resolve(keyId).enabled = true;
    },
    setDown(mode) {
      down = mode;
    },
    calls: () => ({ ...calls }),
    resetCalls() {
      calls = {};
    },
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => resolveClose());
      }),
  };
}
