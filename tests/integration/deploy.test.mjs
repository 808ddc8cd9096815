// The deploy files (deploy/Dockerfile, deploy/compose.yaml, render.yaml, deploy/kubernetes/)
// read by a real YAML parser and checked for what a deploy relies on: health checks on the
// right endpoints, a drain that fits the grace period, a non-root user, secrets by
// reference, and only variables that switchboard (or the image's entrypoint) reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { root, buildDir } from './lib.mjs';

const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');

/** Every document of a YAML file; a syntax error or a duplicate key fails the test. */
function parseAll(p) {
  const docs = YAML.parseAllDocuments(read(p), { uniqueKeys: true });
  for (const d of docs) assert.deepEqual(d.errors, [], `${p}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS()).filter((d) => d != null);
}

// The settings switchboard knows, as `switchboard --settings` lists them (`NAME=default`
// or `# NAME=` when unset), with their defaults.
const defaults = new Map(
  [...execFileSync(path.join(buildDir, 'src', 'switchboard'), ['--settings'], { env: { PATH: process.env.PATH } })
    .toString().matchAll(/^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1], m[2]]),
);
// Read by deploy/entrypoint.sh before switchboard starts, not by switchboard.
const ENTRYPOINT_VARS = ['SWITCHBOARD_MIGRATE_ON_START', 'SWITCHBOARD_INGEST_ON_START', 'SWITCHBOARD_KNOWLEDGE_DIR'];
const known = new Set([...defaults.keys(), ...ENTRYPOINT_VARS]);
// Never written into a deploy file as a value: they come from a secret store.
const SECRETS = ['DATABASE_URL', 'SWITCHBOARD_API_KEYS', 'CONVERSATION_SECRET', 'OPENAI_API_KEY', 'EMBEDDING_API_KEY'];

function assertKnown(names, where) {
  const unknown = names.filter((n) => !known.has(n));
  assert.deepEqual(unknown, [], `${where} sets variables switchboard does not read`);
}

test('switchboard --settings names the settings the deploy files are checked against', () => {
  assert.ok(defaults.size > 40, `only ${defaults.size} settings parsed`);
  for (const name of ['PORT', 'DATABASE_URL', 'SWITCHBOARD_API_KEYS', 'OPENAI_API_KEY', 'DRAIN_TIMEOUT_MS', 'PG_POOL_SIZE']) {
    assert.ok(defaults.has(name), name);
  }
  assert.equal(defaults.get('PORT'), '3000');
  assert.match(defaults.get('DRAIN_TIMEOUT_MS'), /^\d+$/);
});

test('the entrypoint reads its own variables, none of which is a switchboard setting', () => {
  const entrypoint = read('deploy/entrypoint.sh');
  for (const name of ENTRYPOINT_VARS) {
    assert.ok(entrypoint.includes(`\${${name}`), `deploy/entrypoint.sh reads ${name}`);
    assert.ok(!defaults.has(name), `${name} would shadow a setting`);
  }
  const read_ = [...entrypoint.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]);
  assertKnown(read_, 'deploy/entrypoint.sh');
  assert.match(entrypoint, /^exec "\$@"$/m, 'switchboard replaces the shell, so it gets SIGTERM itself');
  assert.ok(fs.statSync(path.join(root, 'deploy/entrypoint.sh')).mode & 0o111, 'executable');
});

test('the Dockerfile: Debian 12 base as an argument, release build, non-root, health check, stop signal, port', () => {
  const text = read('deploy/Dockerfile');
  assert.match(text, /^ARG BASE=debian:bookworm-slim$/m);
  const froms = [...text.matchAll(/^FROM (.*)$/gm)].map((m) => m[1]);
  assert.equal(froms.length, 2, 'two stages');
  assert.ok(froms.every((f) => f.startsWith('${BASE}')), `both stages on \${BASE}: ${froms}`);
  const [build, final] = text.split(/^FROM .*$/m).slice(1);
  assert.match(build, /meson setup \S+ --buildtype=release/);
  assert.doesNotMatch(final, /-dev\b|build-essential|meson/, 'no build tools in the final stage');
  for (const lib of ['libh2o0.13', 'libuv1', 'libcurl4', 'libpq5', 'libsodium23', 'libjansson4', 'ca-certificates']) {
    assert.match(final, new RegExp(`\\b${lib.replace('.', '\\.')}\\b`), lib);
  }
  const user = /^USER (\S+)$/m.exec(final)?.[1];
  assert.ok(user, 'USER is set');
  assert.ok(!/^(root|0)(:|$)/.test(user), `USER ${user} is not root`);
  assert.match(final, /^EXPOSE 3000$/m);
  assert.match(final, /^STOPSIGNAL SIGTERM$/m);
  assert.match(final, /^HEALTHCHECK .*\n?.*\/healthz/m);
  assert.match(final, /^COPY rag\/knowledge /m, 'the knowledge base is inside');
  assert.match(final, /^ENTRYPOINT \["switchboard-entrypoint"\]$/m);
  assert.match(final, /^COPY deploy\/entrypoint\.sh \S*\/switchboard-entrypoint$/m);
  // Every file the build copies exists, and .dockerignore does not hide it.
  const ignored = read('.dockerignore').split('\n').filter((l) => l && !l.startsWith('#'));
  const glob = (p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*\*\//g, '\0')
    .replace(/\*/g, '[^/]*').replace(/\0/g, '(.*/)?')}(/|$)`);
  const hidden = (src) => ignored.some((p) => glob(p).test(src));
  assert.ok(hidden('build-test/src') && hidden('tests/node_modules/x') && hidden('.env') && !hidden('meson.build'), 'the globs read as Docker reads them');
  for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const src of m[1].split(' ')) {
      assert.ok(fs.existsSync(path.join(root, src)), `COPY ${src} exists`);
      assert.ok(!hidden(src), `COPY ${src} is not ignored`);
    }
  }
  for (const p of ['build*', '**/node_modules', '.env', '.local', '.git']) assert.ok(ignored.includes(p), `.dockerignore: ${p}`);
});

test('deploy/compose.yaml: switchboard on a healthy Postgres 15 with a volume, vector stores as profiles', () => {
  const [compose] = parseAll('deploy/compose.yaml');
  const { switchboard: sb, postgres: pg, qdrant, chroma } = compose.services;
  assert.equal(sb.build.context, '..');
  assert.ok(fs.existsSync(path.join(root, 'deploy', sb.build.context, sb.build.dockerfile)), 'the Dockerfile it builds');
  assert.deepEqual(sb.depends_on.postgres, { condition: 'service_healthy' });
  assert.ok(sb.healthcheck.test.join(' ').includes('/readyz'), 'switchboard has its own health check');
  assert.ok(sb.ports.some((p) => String(p).endsWith(':3000')), 'publishes the container port 3000');

  assert.equal(pg.image, 'postgres:15');
  assert.match(pg.healthcheck.test.join(' '), /pg_isready/);
  const [volume] = pg.volumes.map((v) => v.split(':')[0]);
  assert.ok(volume in compose.volumes, `Postgres keeps its data in the named volume ${volume}`);
  assert.match(sb.environment.DATABASE_URL, /@postgres:5432\//, 'switchboard reaches the postgres service');
  assert.equal(pg.environment.POSTGRES_DB, /\/([^/?]+)$/.exec(sb.environment.DATABASE_URL)[1]);

  assert.match(qdrant.image, /^qdrant\/qdrant\b/);
  assert.deepEqual(qdrant.profiles, ['qdrant']);
  assert.match(chroma.image, /^chromadb\/chroma\b/);
  assert.deepEqual(chroma.profiles, ['chroma']);
  assert.ok(!sb.profiles && !pg.profiles, 'switchboard and Postgres always start');
  assert.match(sb.environment.QDRANT_URL, /\/\/qdrant:/);
  assert.match(sb.environment.CHROMA_URL, /\/\/chroma:/);

  assertKnown(Object.keys(sb.environment), 'compose.yaml (switchboard)');
  for (const name of SECRETS.filter((n) => n !== 'DATABASE_URL')) {
    const v = sb.environment[name];
    assert.ok(v === undefined || /^\$\{[A-Z_]+(:[-?][^}]*)?\}$/.test(v), `${name} comes from the environment, not the file: ${v}`);
  }
  const drain = Number(defaults.get('DRAIN_TIMEOUT_MS'));
  assert.ok(parseInt(sb.stop_grace_period, 10) * 1000 > drain, 'Compose waits out the drain');
});

// Render Blueprint fields as documented in Render's Blueprint YAML reference.
const RENDER_SERVICE_FIELDS = new Set(['type', 'name', 'runtime', 'plan', 'region', 'repo', 'branch', 'dockerfilePath',
  'dockerContext', 'dockerCommand', 'healthCheckPath', 'preDeployCommand', 'maxShutdownDelaySeconds', 'numInstances',
  'scaling', 'autoDeploy', 'autoDeployTrigger', 'envVars', 'domains', 'disk', 'buildFilter', 'rootDir']);
const RENDER_ENV_FIELDS = new Set(['key', 'value', 'generateValue', 'sync', 'fromDatabase', 'fromService', 'fromGroup']);
const RENDER_DB_FIELDS = new Set(['name', 'databaseName', 'user', 'plan', 'region', 'postgresMajorVersion', 'diskSizeGB',
  'ipAllowList', 'readReplicas', 'highAvailability']);

test('render.yaml: a Docker web service on Render Postgres, generated key, prompted provider, migration before deploy', () => {
  const [bp] = parseAll('render.yaml');
  const [web] = bp.services;
  for (const f of Object.keys(web)) assert.ok(RENDER_SERVICE_FIELDS.has(f), `service field ${f}`);
  assert.equal(web.type, 'web');
  assert.equal(web.runtime, 'docker');
  assert.equal(web.dockerContext, '.');
  assert.ok(fs.existsSync(path.join(root, web.dockerContext, web.dockerfilePath)), web.dockerfilePath);
  assert.equal(web.dockerfilePath, './deploy/Dockerfile');
  assert.equal(web.healthCheckPath, '/readyz');
  assert.match(web.preDeployCommand, /^switchboard migrate\b/);
  assert.ok(web.maxShutdownDelaySeconds * 1000 > Number(defaults.get('DRAIN_TIMEOUT_MS')), 'Render waits out the drain');

  const env = new Map(web.envVars.map((e) => [e.key, e]));
  for (const e of web.envVars) for (const f of Object.keys(e)) assert.ok(RENDER_ENV_FIELDS.has(f), `envVars field ${f}`);
  assertKnown([...env.keys()], 'render.yaml');
  const [db] = bp.databases;
  for (const f of Object.keys(db)) assert.ok(RENDER_DB_FIELDS.has(f), `database field ${f}`);
  assert.deepEqual(env.get('DATABASE_URL').fromDatabase, { name: db.name, property: 'connectionString' });
  assert.equal(env.get('SWITCHBOARD_API_KEYS').generateValue, true);
  for (const name of ['OPENAI_API_KEY', 'LLM_BASE_URL', 'OPENAI_MODEL']) assert.equal(env.get(name)?.sync, false, `${name}: sync false`);
  for (const name of SECRETS) assert.equal(env.get(name)?.value, undefined, `${name} has no value in the file`);
  assert.equal(typeof db.postgresMajorVersion, 'string', 'Render wants the version as a string');
});

test('the README has a Deploy to Render button', () => {
  assert.match(read('README.md'), /\]\(https:\/\/render\.com\/deploy\?repo=[^)]+\)/);
});

test('deploy/kubernetes: probes, drain within the grace period, non-root, limits, secrets by reference, HPA, PDB, Job', () => {
  const dir = 'deploy/kubernetes';
  const files = fs.readdirSync(path.join(root, dir)).filter((f) => /\.ya?ml$/.test(f));
  const byFile = new Map(files.map((f) => [f, parseAll(path.join(dir, f))]));
  const [kustomization] = byFile.get('kustomization.yaml');
  assert.equal(kustomization.kind, 'Kustomization');
  for (const r of kustomization.resources) assert.ok(byFile.has(r), `kustomization lists ${r}, which exists`);
  const unlisted = files.filter((f) => f !== 'kustomization.yaml' && !kustomization.resources.includes(f));
  assert.deepEqual(unlisted, ['secret.example.yaml'], 'every manifest but the example Secret is applied');

  const objects = kustomization.resources.flatMap((r) => byFile.get(r));
  const one = (kind) => {
    const found = objects.filter((o) => o.kind === kind);
    assert.equal(found.length, 1, `one ${kind}`);
    return found[0];
  };
  assert.ok(!objects.some((o) => o.kind === 'Secret'), 'no Secret is applied from the repository');
  const deploy = one('Deployment');
  const pod = deploy.spec.template.spec;
  const [c] = pod.containers;
  const labels = deploy.spec.template.metadata.labels;
  const selects = (sel) => Object.entries(sel).every(([k, v]) => labels[k] === v);
  assert.ok(selects(deploy.spec.selector.matchLabels));

  const http = c.ports.find((p) => p.name === 'http');
  assert.equal(http.containerPort, Number(defaults.get('PORT')));
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.path, '/ping');
  for (const probe of [c.readinessProbe, c.livenessProbe]) assert.ok([http.name, http.containerPort].includes(probe.httpGet.port));

  const drainMs = Number(defaults.get('DRAIN_TIMEOUT_MS'));
  const env = new Map(c.env.map((e) => [e.name, e]));
  const podDrainMs = Number(env.get('DRAIN_TIMEOUT_MS')?.value ?? drainMs);
  const preStopS = Number(c.lifecycle?.preStop?.exec?.command?.at(-1) ?? 0);
  // switchboard drains, then gives cut-off callers a second to read their last bytes.
  assert.ok(pod.terminationGracePeriodSeconds * 1000 > preStopS * 1000 + podDrainMs + 1000,
    `grace ${pod.terminationGracePeriodSeconds} s > preStop ${preStopS} s + drain ${podDrainMs} ms + 1 s`);

  for (const k of ['cpu', 'memory']) {
    assert.ok(c.resources.requests[k], `requests.${k}`);
    assert.ok(c.resources.limits[k], `limits.${k}`);
  }
  const nonRoot = (podSpec, container) => {
    const user = container.securityContext?.runAsUser ?? podSpec.securityContext?.runAsUser;
    assert.ok(podSpec.securityContext?.runAsNonRoot || container.securityContext?.runAsNonRoot, 'runAsNonRoot');
    assert.ok(user > 0, 'a non-root uid');
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
    return user;
  };
  const uid = nonRoot(pod, c);
  assert.equal(`${uid}:${uid}`, /^USER (\S+)$/m.exec(read('deploy/Dockerfile'))[1], "the image's own user");

  const secretKeys = (container) => (container.env ?? []).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom.secretKeyRef.key);
  assertKnown([...env.keys()], 'the Deployment');
  for (const name of SECRETS) {
    const e = env.get(name);
    if (e) assert.ok(e.valueFrom?.secretKeyRef && e.value === undefined, `${name} comes from a Secret`);
  }
  for (const name of ['DATABASE_URL', 'SWITCHBOARD_API_KEYS']) assert.ok(env.get(name)?.valueFrom?.secretKeyRef, name);

  const service = one('Service');
  assert.ok(selects(service.spec.selector), 'the Service selects the pods');
  assert.ok(service.spec.ports.every((p) => p.targetPort === http.name || p.targetPort === http.containerPort));

  const hpa = one('HorizontalPodAutoscaler');
  assert.equal(hpa.apiVersion, 'autoscaling/v2');
  assert.deepEqual({ kind: hpa.spec.scaleTargetRef.kind, name: hpa.spec.scaleTargetRef.name }, { kind: 'Deployment', name: deploy.metadata.name });
  assert.ok(hpa.spec.metrics.some((m) => m.type === 'Resource' && m.resource.name === 'cpu'), 'scales on CPU');
  assert.ok(hpa.spec.maxReplicas >= hpa.spec.minReplicas && hpa.spec.minReplicas >= 1);

  const pdb = one('PodDisruptionBudget');
  assert.ok(selects(pdb.spec.selector.matchLabels), 'the PDB covers the pods');
  assert.ok(pdb.spec.minAvailable < Math.min(deploy.spec.replicas, hpa.spec.minReplicas), 'a drain can still evict one');

  const job = one('Job');
  const jobPod = job.spec.template.spec;
  const [jc] = jobPod.containers;
  assert.deepEqual(jc.args ?? jc.command, ['switchboard', 'migrate']);
  assert.equal(jc.image, c.image, 'the same image as the Deployment');
  assert.ok(['OnFailure', 'Never'].includes(jobPod.restartPolicy));
  nonRoot(jobPod, jc);
  assertKnown(jc.env.map((e) => e.name), 'the migration Job');
  assert.deepEqual(secretKeys(jc), ['DATABASE_URL']);
  const jobLabels = job.spec.template.metadata.labels ?? {};
  assert.ok(!Object.entries(service.spec.selector).every(([k, v]) => jobLabels[k] === v), 'the Service sends no turns to the migration pod');

  // The example Secret holds every key the manifests read, and only settings.
  const [example] = byFile.get('secret.example.yaml');
  assert.equal(example.kind, 'Secret');
  assert.equal(example.metadata.name, c.env.find((e) => e.valueFrom?.secretKeyRef).valueFrom.secretKeyRef.name);
  const required = [c, jc].flatMap((x) => x.env.filter((e) => e.valueFrom?.secretKeyRef && !e.valueFrom.secretKeyRef.optional)
    .map((e) => e.valueFrom.secretKeyRef.key));
  for (const key of required) assert.ok(key in example.stringData, `secret.example.yaml has ${key}`);
  assertKnown(Object.keys(example.stringData), 'secret.example.yaml');
});
