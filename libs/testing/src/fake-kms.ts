import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A KMS-compatible endpoint speaking the AWS JSON 1.1 protocol (`X-Amz-Target:
 * TrentService.<Operation>`), enough for @aws-sdk/client-kms: keys, aliases, data
 * keys, Decrypt/ReEncrypt bound to the encryption context, and AWS's error names.
 * Ciphertext blobs embed the key id, as real KMS blobs do, so Decrypt needs no KeyId.
 */
export interface FakeKms {
  readonly endpoint: string;
  readonly region: string;
  createKey(options?: { alias?: string; description?: string }): { keyId: string; arn: string };
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
  material: Buffer;
  enabled: boolean;
  description: string;
  createdAt: Date;
}

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
    return {
      AWSAccountId: ACCOUNT,
      KeyId: key.id,
      Arn: key.arn,
      Enabled: key.enabled,
      KeyState: key.enabled ? 'Enabled' : 'Disabled',
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeySpec: 'SYMMETRIC_DEFAULT',
      Description: key.description,
      CreationDate: key.createdAt.getTime() / 1000,
    };
  }

  function createKey(description = '', alias?: string): KeyRecord {
    const id = randomUUID();
    const key: KeyRecord = {
      id,
      arn: `arn:aws:kms:${region}:${ACCOUNT}:key/${id}`,
      material: randomBytes(32),
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
    CreateKey: (input) => ({ KeyMetadata: metadata(createKey(String(input.Description ?? ''))) }),
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
      const key = usable(resolve(input.KeyId));
      const plaintext = randomBytes(dataKeyLength(input));
      return {
        KeyId: key.arn,
        Plaintext: plaintext.toString('base64'),
        CiphertextBlob: encrypt(key, plaintext, input.EncryptionContext).toString('base64'),
      };
    },
    GenerateDataKeyWithoutPlaintext: (input) => {
      const key = usable(resolve(input.KeyId));
      return {
        KeyId: key.arn,
        CiphertextBlob: encrypt(key, randomBytes(dataKeyLength(input)), input.EncryptionContext).toString(
          'base64',
        ),
      };
    },
    Encrypt: (input) => {
      const key = usable(resolve(input.KeyId));
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
      const destination = usable(resolve(input.DestinationKeyId));
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
      const key = createKey(opts.description, opts.alias);
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
