import { startFakeKms } from './fake-kms.ts';

// A variable of its own: PORT is Warden's, often set in the same shell or .env file.
const kms = await startFakeKms({ port: Number(process.env.FAKE_KMS_PORT || 4599) });
const key = kms.createKey({ alias: 'alias/warden', description: 'warden local demo key' });
console.log(`fake KMS listening on ${kms.endpoint} (region ${kms.region})`);
console.log(
  `KMS_PROVIDER=aws AWS_KMS_KEY_ID=alias/warden AWS_KMS_ENDPOINT=${kms.endpoint} AWS_REGION=${kms.region}`,
);
console.log(`key ${key.arn}`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    void kms.close().then(() => process.exit(0));
  });
}
