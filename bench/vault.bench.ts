/**
 * `npm run bench -- vault [--json] [--seconds 2]`: envelope seal/open per second for the
 * local key provider and for AWS KMS (the real @aws-sdk/client-kms against the in-process
 * fake KMS on loopback), with a raw AES-256-GCM baseline on the same payload measured in the
 * same run, so the vault's overhead reads as a ratio rather than a number from another day.
 *
 * - open_warm: the data key is in the envelope's cache (the service's steady state).
 * - open_cold: a cache with maxEntries 0, so every open unwraps the data key (local: one
 *   AES-GCM unwrap; KMS: one Decrypt round trip). Checked: cold opens must miss the cache
 *   and, for KMS, make exactly one Decrypt call each.
 * - seal: a new data key per seal (local: random key + wrap; KMS: one GenerateDataKey call).
 *
 * One operation in flight at a time; each figure runs `--seconds` after a warm-up of a
 * quarter of that. The fake KMS shares this event loop, so KMS figures include its work.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAwsKmsKeyProvider, createLocalKeyProvider } from '@warden/kms';
import type { KeyProvider } from '@warden/kms';
import { startFakeKms } from '@warden/testing';
import type { FakeKms } from '@warden/testing';
import { createEnvelope, sealIdentity } from '@warden/vault';
import type { SealIdentity } from '@warden/vault';
import {
  environmentInfo,
  machineInfo,
  measureRate,
  numberArg,
  round,
  startCpuAccount,
} from './bench-utils.ts';
import type { RateOptions } from './bench-utils.ts';

const IDENTITY: SealIdentity = sealIdentity('credential', 'ten_bench0000000000', 'ca_bench00000000000');

/** What the vault seals in production: the serialized credential (a 40-character API token). */
const PAYLOAD = Buffer.from(
  JSON.stringify({ type: 'api_token', apiToken: randomBytes(30).toString('base64url') }),
  'utf8',
);

/** The same AAD bytes the envelope binds to a row, so the baseline does the same GCM work. */
const AAD = Buffer.from(
  `warden/sealed/v2\u0000${IDENTITY.kind}\u0000${IDENTITY.tenantId}\u0000${IDENTITY.id}`,
  'utf8',
);

async function providerFigures(
  prefix: string,
  keys: KeyProvider,
  timing: RateOptions,
  kms: FakeKms | null,
): Promise<Record<string, number>> {
  const warm = createEnvelope(keys, { maxEntries: 1000, ttlMs: 3_600_000 });
  const sealed = await warm.seal(IDENTITY, PAYLOAD);
  const opened = await warm.open(IDENTITY, sealed);
  if (!opened.equals(PAYLOAD)) throw new Error(`${prefix}: open did not return the sealed payload`);

  const warmHitsBefore = warm.cache.hits;
  const openWarm = await measureRate(() => warm.open(IDENTITY, sealed), { ...timing, batch: 16 });
  if (warm.cache.hits - warmHitsBefore < openWarm.operations) {
    throw new Error(`${prefix}: warm opens missed the data-key cache`);
  }

  // maxEntries 0 disables the cache (set is a no-op), so every open unwraps the data key.
  const cold = createEnvelope(keys, { maxEntries: 0, ttlMs: 3_600_000 });
  kms?.resetCalls();
  const openCold = await measureRate(() => cold.open(IDENTITY, sealed), timing);
  if (cold.cache.hits !== 0) throw new Error(`${prefix}: cold opens hit the data-key cache`);
  if (kms) {
    const decrypts = kms.calls().Decrypt ?? 0;
    // Warm-up opens are cold too, so at least one Decrypt per measured open.
    if (decrypts < openCold.operations) throw new Error(`${prefix}: cold opens did not call KMS Decrypt`);
  }

  const sealing = createEnvelope(keys, { maxEntries: 1000, ttlMs: 3_600_000 });
  const seal = await measureRate(async () => {
    await sealing.seal(IDENTITY, PAYLOAD);
    // Every seal caches its new data key; clearing keeps the LRU's eviction work out of the figure.
    if (sealing.cache.size >= 512) sealing.cache.clear();
  }, timing);
  warm.cache.clear();
  sealing.cache.clear();

  return {
    [`${prefix}_open_warm_per_s`]: Math.round(openWarm.perSecond),
    [`${prefix}_open_cold_per_s`]: Math.round(openCold.perSecond),
    [`${prefix}_seal_per_s`]: Math.round(seal.perSecond),
  };
}

/** Raw AES-256-GCM on the same payload and AAD with the key in memory: the floor for open and seal. */
async function baselineFigures(timing: RateOptions): Promise<Record<string, number>> {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(AAD);
  const ciphertext = Buffer.concat([cipher.update(PAYLOAD), cipher.final()]);
  const tag = cipher.getAuthTag();

  const decrypt = () => {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(AAD);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  };
  if (!decrypt().equals(PAYLOAD)) throw new Error('baseline decrypt did not return the payload');
  const encrypt = () => {
    const c = createCipheriv('aes-256-gcm', key, randomBytes(12));
    c.setAAD(AAD);
    return Buffer.concat([c.update(PAYLOAD), c.final(), c.getAuthTag()]);
  };
  const batch = { ...timing, batch: 64 };
  return {
    aes_gcm_decrypt_per_s: Math.round((await measureRate(decrypt, batch)).perSecond),
    aes_gcm_encrypt_per_s: Math.round((await measureRate(encrypt, batch)).perSecond),
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 2);
  const timing: RateOptions = { seconds, warmupSeconds: Math.max(0.25, seconds / 4) };
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-vault-'));
  const kms = await startFakeKms();
  try {
    const before = machineInfo('start');
    // The machine is shared: how busy it was, and how much of it other people's processes took.
    const cpu = startCpuAccount();
    const baseline = await baselineFigures(timing);
    const local = await providerFigures(
      'local',
      createLocalKeyProvider({ keyFile: path.join(dir, 'warden-keys.json') }),
      timing,
      null,
    );
    kms.createKey({ alias: 'alias/warden-bench' });
    const aws = await providerFigures(
      'aws_kms_fake',
      createAwsKmsKeyProvider({
        keyId: 'alias/warden-bench',
        region: kms.region,
        endpoint: kms.endpoint,
        credentials: { accessKeyId: 'AKIABENCHMARK', secretAccessKey: 'bench-secret-access-key' },
        // A retry would hide a failure inside a slower figure.
        maxAttempts: 1,
      }),
      timing,
      kms,
    );
    const account = cpu.stop();
    const capacity = account.machineCapacityMs ?? 0;
    const decryptBaseline = baseline.aes_gcm_decrypt_per_s as number;
    return {
      ...environmentInfo(),
      seconds_per_figure: seconds,
      payload_bytes: PAYLOAD.length,
      ...before,
      ...baseline,
      ...local,
      ...aws,
      // How many raw decrypts fit in the time of one open: the vault's overhead as a factor.
      local_open_warm_cost_x_aes: round(decryptBaseline / (local.local_open_warm_per_s as number), 1),
      local_open_cold_cost_x_aes: round(decryptBaseline / (local.local_open_cold_per_s as number), 1),
      aws_kms_fake_open_cold_cost_x_aes: round(
        decryptBaseline / (aws.aws_kms_fake_open_cold_per_s as number),
        1,
      ),
      ...(capacity > 0
        ? {
            machine_busy_pct: round((100 * (account.machineBusyMs ?? 0)) / capacity, 1),
            // Everything here runs in this process: any other busy time is someone else's.
            other_processes_cpu_pct: round(
              (100 * Math.max(0, (account.machineBusyMs ?? 0) - account.benchMs)) / capacity,
              1,
            ),
          }
        : {}),
      ...machineInfo('end'),
    };
  } finally {
    await kms.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
