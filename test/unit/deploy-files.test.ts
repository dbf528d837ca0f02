import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { configSchema } from '../../src/config/schema.ts';

/**
 * The deployment files are checked here because this machine (and CI without a container engine)
 * cannot run them: compose.yaml and deploy/kubernetes.yaml must parse and say what they must, and
 * the Dockerfile passes the checks hadolint would make that matter here.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');
const settings = new Set(Object.keys(configSchema.shape));

type Service = {
  build?: unknown;
  image?: string;
  environment?: Record<string, string>;
  ports?: string[];
  healthcheck?: { test?: string[] };
  depends_on?: Record<string, { condition?: string }>;
  volumes?: string[];
  networks?: { default?: { aliases?: string[] } };
};

/** Compose's ${VAR:?message} and ${VAR:-default} must name a variable that deploy/env.example documents. */
function interpolated(text: string): string[] {
  return [...text.matchAll(/\$\{([A-Z_]+)(?::[?-][^}]*)?\}/g)].map((m) => m[1]!);
}

describe('compose.yaml', () => {
  const text = read('compose.yaml');
  // Compose resolves YAML merge keys and aliases the same way.
  const compose = parse(text, { merge: true }) as { services: Record<string, Service> };
  const services = compose.services;
  const instances = Object.entries(services).filter(([, s]) => s.build !== undefined);

  it('runs two instances of this Dockerfile, PostgreSQL, Redis and a proxy', () => {
    assert.deepEqual(Object.keys(services).sort(), ['idp-1', 'idp-2', 'postgres', 'proxy', 'redis']);
    assert.equal(instances.length, 2);
    for (const [name, s] of instances) {
      assert.equal(s.build, '.', `${name} builds the Dockerfile at the top`);
      assert.equal(s.image, 'idp:local');
    }
    for (const [name, s] of Object.entries(services)) {
      assert.ok(s.image, `${name} names its image`);
      assert.doesNotMatch(s.image!, /:latest$|^[^:]+$/, `${name}: a pinned image tag`);
    }
  });

  it('gives every instance a production configuration the schema accepts', () => {
    for (const [name, s] of instances) {
      const env = s.environment ?? {};
      for (const key of Object.keys(env)) assert.ok(settings.has(key), `${name}: ${key} is a setting of src/config/schema.ts`);
      for (const key of ['ISSUER', 'DATABASE_URL', 'REDIS_URL', 'KEY_ENCRYPTION_KEY', 'BOOTSTRAP_ADMIN_CLIENT_ID', 'BOOTSTRAP_ADMIN_CLIENT_SECRET']) {
        assert.ok(env[key], `${name} sets ${key}`);
      }
      assert.equal(env.NODE_ENV, 'production');
      assert.equal(env.TRUST_PROXY, 'true', 'behind the proxy');
      assert.match(env.ISSUER!, /^https:\/\//);
      assert.ok(!s.ports, `${name} publishes no port: only the proxy does`);
      assert.match(JSON.stringify(s.healthcheck?.test), /\/readyz/);
      assert.equal(s.depends_on?.postgres?.condition, 'service_healthy');
      assert.equal(s.depends_on?.redis?.condition, 'service_healthy');

      // The same settings, with the .env values filled in, pass the real schema.
      const filled = Object.fromEntries(
        Object.entries(env).map(([k, v]) => [
          k,
          v
            .replace(/\$\{IDP_DOMAIN[^}]*\}/g, 'id.example.com')
            .replace(/\$\{KEY_ENCRYPTION_KEY[^}]*\}/g, 'A'.repeat(43))
            .replace(/\$\{BOOTSTRAP_ADMIN_CLIENT_SECRET[^}]*\}/g, 's'.repeat(40))
            .replace(/\$\{([A-Z_]+):-([^}]*)\}/g, '$2')
            .replace(/\$\{[A-Z_]+:\?[^}]*\}/g, 'x'),
        ]).filter(([, v]) => v !== ''),
      );
      const parsed = configSchema.safeParse(filled);
      assert.ok(parsed.success, `${name}: ${JSON.stringify(parsed.error?.issues)}`);
    }
  });

  it('health-checks every service, and only the proxy publishes ports', () => {
    for (const [name, s] of Object.entries(services)) assert.ok(s.healthcheck?.test?.length, `${name} has a healthcheck`);
    assert.deepEqual(services.proxy!.ports, ['80:80', '443:443']);
    assert.equal(services.proxy!.depends_on?.['idp-1']?.condition, 'service_healthy');
    assert.ok(services.redis!.healthcheck && JSON.stringify(services.redis).includes('noeviction'), 'Redis never evicts security state');
  });

  it('the proxy config exists and spreads over both instances, health-checked on /readyz', () => {
    const mount = services.proxy!.volumes!.find((v) => v.includes('Caddyfile'))!;
    const file = mount.split(':')[0]!;
    assert.ok(existsSync(path.join(root, file)), `${file} exists`);
    const caddy = read(file);
    for (const [name] of instances) assert.match(caddy, new RegExp(`${name}:3000`));
    assert.match(caddy, /health_uri \/readyz/);
    assert.match(caddy, /respond \/metrics 404/, 'the public side never serves metrics');
  });

  it('every variable it reads from .env is documented in deploy/env.example', () => {
    const example = read('deploy/env.example');
    for (const name of new Set(interpolated(text))) assert.match(example, new RegExp(`^${name}=`, 'm'), `${name} in deploy/env.example`);
  });
});

describe('deploy/kubernetes.yaml', () => {
  const docs = parseAllDocuments(read('deploy/kubernetes.yaml')).map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS() as { kind: string; metadata: { name: string }; spec: any };
  });
  const deployment = docs.find((d) => d.kind === 'Deployment')!;
  const container = deployment?.spec.template.spec.containers[0];

  it('a Deployment of two replicas with readiness on /readyz and liveness on /healthz', () => {
    assert.ok(deployment);
    assert.ok(deployment.spec.replicas >= 2);
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    assert.equal(container.livenessProbe.httpGet.path, '/healthz');
    assert.equal(deployment.spec.template.spec.securityContext.runAsNonRoot, true);
    assert.ok(deployment.spec.template.spec.terminationGracePeriodSeconds > 25, 'longer than the process gives its own drain');
  });

  it('takes its settings from known names and its secrets from a Secret', () => {
    for (const { name } of container.env as Array<{ name: string }>) assert.ok(settings.has(name), `${name} is a setting`);
    assert.equal(container.envFrom[0].secretRef.name, 'idp');
    const env = Object.fromEntries((container.env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
    const port = Number(env.PORT);
    assert.ok(container.ports.some((p: { name: string; containerPort: number }) => p.name === 'http' && p.containerPort === port));
    assert.ok(container.ports.some((p: { name: string; containerPort: number }) => p.name === 'metrics' && p.containerPort === Number(env.METRICS_PORT)));
  });

  it('Services select the Deployment pods', () => {
    const labels = deployment.spec.template.metadata.labels as Record<string, string>;
    const services = docs.filter((d) => d.kind === 'Service');
    assert.ok(services.length >= 1);
    for (const s of services) {
      for (const [k, v] of Object.entries(s.spec.selector as Record<string, string>)) assert.equal(labels[k], v, `${s.metadata.name} selects the pods`);
    }
  });
});

describe('Dockerfile', () => {
  const lines = read('Dockerfile').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const instructions = lines.map((l) => l.trim().split(/\s+/)[0]!.toUpperCase());

  it('pins its base images, runs as a non-root user, health-checks and starts in exec form', () => {
    for (const from of lines.filter((l) => /^FROM\s/i.test(l))) {
      const image = from.split(/\s+/)[1]!;
      assert.match(image, /^[\w./-]+:[\w.-]+$/, `${image}: a tag`);
      assert.doesNotMatch(image, /:latest$/, `${image}: not latest`);
    }
    const lastUser = lines.filter((l) => /^USER\s/i.test(l)).pop();
    assert.ok(lastUser && !/\broot\b|\b0\b/.test(lastUser), 'runs as a non-root user');
    assert.ok(instructions.lastIndexOf('USER') < instructions.lastIndexOf('CMD'), 'USER comes before CMD');
    assert.ok(instructions.includes('HEALTHCHECK'));
    assert.match(lines.find((l) => /^CMD\s/i.test(l))!, /^CMD \[/, 'CMD in exec form, so SIGTERM reaches node');
    assert.ok(!lines.some((l) => /npm install\b/.test(l)), 'npm ci, never npm install');
    assert.ok(!instructions.includes('ADD'), 'COPY, not ADD');
  });

  it('ships the idp command on PATH, with what its launcher runs in the image', () => {
    assert.ok(lines.some((l) => /^COPY bin \.\/bin$/.test(l.trim())), 'COPY bin ./bin');
    assert.ok(lines.some((l) => /ln -s \/app\/bin\/idp\.js \/usr\/local\/bin\/idp\b/.test(l)), 'idp linked onto PATH');
    // Without src/ (the image copies only dist/), the launcher runs the compiled CLI.
    assert.match(read('bin/idp.js'), /dist\/src\/cli\/main\.js/);
    assert.ok(lines.some((l) => /^COPY --from=build \/app\/dist \.\/dist$/.test(l.trim())));
  });

  it('leaves secrets and local state out of the build context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['.env', 'data', 'node_modules', '.git']) assert.ok(ignored.includes(entry), `.dockerignore has ${entry}`);
  });
});
