// The Kubernetes manifests in deploy/: every kustomization renders, every rendered object is
// valid against the Kubernetes API schemas, and the settings the proxy depends on hold together
// (ports and probes match the config, the grace period covers the drain, the security context is
// locked down, selectors select the pods, each overlay does what it says).
//
// Rendering: `kubectl kustomize` (kubectl ≥ 1.27, kustomize v5) or a `kustomize` binary on PATH.
// Validation, offline, with the schemas of the `kubernetes-models` packages (generated from the
// Kubernetes OpenAPI spec and the Prometheus Operator CRDs), two ways:
// - their validators (types, required fields, enums, formats), and
// - the TypeScript compiler over the same schemas as types, which refuses any field the API does
//   not define (`readOnlyRootFileSystem`, `containerport`): the validators alone accept those.
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import t, { type Test } from "tap";
import ts from "typescript";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../../src/config/load.ts";
import type { ProxyConfig } from "../../src/config/types.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const HERE = fileURLToPath(new URL(".", import.meta.url));

type Obj = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> } };

const TARGETS = ["deploy", "deploy/base", "deploy/overlays/vault", "deploy/overlays/aws", "deploy/examples/sidecar"] as const;
type Target = (typeof TARGETS)[number];

// ---- rendering ------------------------------------------------------------------------------------

function findRenderer(): { name: string; render(dir: string): string } | undefined {
  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (kubectl.status === 0 && /Kustomize Version: v[45]\./.test(kubectl.stdout)) {
    return { name: "kubectl kustomize", render: (dir) => execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  }
  const kustomize = spawnSync("kustomize", ["version"], { encoding: "utf8" });
  if (kustomize.status === 0 && /v[45]\./.test(kustomize.stdout)) {
    return { name: "kustomize build", render: (dir) => execFileSync("kustomize", ["build", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  }
  return undefined;
}

const renderer = findRenderer();

function render(target: Target): Obj[] {
  const text = renderer!.render(join(ROOT, target));
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

// ---- schema validation ----------------------------------------------------------------------------

/** The kubernetes-models module of an object's kind. */
function modelModule(obj: Obj): string {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${obj.kind}`;
  return group === "" ? `kubernetes-models/${version}/${obj.kind}` : `kubernetes-models/${group}/${version}/${obj.kind}`;
}

/** Runs the generated validator of the object's schema; returns its complaint, if any. */
async function validateModel(obj: Obj): Promise<string | undefined> {
  const specifier = modelModule(obj);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    return `no schema for ${obj.apiVersion} ${obj.kind} (${specifier}): ${(err as Error).message} — are the devDependencies kubernetes-models and @kubernetes-models/prometheus-operator installed?`;
  }
  const Model = mod[obj.kind] as (new (data: unknown) => { validate(): void }) | undefined;
  if (Model === undefined) return `${specifier} has no ${obj.kind}`;
  try {
    new Model(obj).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Type-checks each object as a literal of its schema's TypeScript interface: an unknown field at
 * any depth is an excess-property error. Returns the diagnostics per object index.
 */
function strictFieldCheck(objects: readonly Obj[]): Map<number, string[]> {
  const lines: string[] = [];
  const owner: Array<[start: number, index: number]> = [];
  objects.forEach((obj, i) => {
    lines.push(`import type { I${obj.kind} as T${i} } from ${JSON.stringify(modelModule(obj))};`);
  });
  let offset = lines.join("\n").length + 1;
  objects.forEach((obj, i) => {
    const line = `export const o${i}: T${i} = ${JSON.stringify(obj)};`;
    owner.push([offset, i]);
    lines.push(line);
    offset += line.length + 1;
  });
  const fileName = join(HERE, "__rendered_manifests__.ts");
  const source = lines.join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, onError, shouldCreate) =>
    name === fileName ? ts.createSourceFile(name, source, languageVersion, true) : getSourceFile(name, languageVersion, onError, shouldCreate);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram([fileName], options, host);
  const found = new Map<number, string[]>();
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    const at = d.start ?? 0;
    const index = [...owner].reverse().find(([start]) => at >= start)?.[1] ?? -1;
    const list = found.get(index) ?? [];
    list.push(message);
    found.set(index, list);
  }
  return found;
}

/** Problems of each object (both checks), by index; one TypeScript program for all of them. */
async function schemaProblems(objects: readonly Obj[]): Promise<string[][]> {
  const problems = objects.map(() => [] as string[]);
  for (const [i, obj] of objects.entries()) {
    const complaint = await validateModel(obj);
    if (complaint !== undefined) problems[i]!.push(`${obj.kind}/${obj.metadata.name}: ${complaint}`);
  }
  for (const [index, messages] of strictFieldCheck(objects)) {
    const obj = objects[index];
    for (const message of messages) (problems[index] ?? problems[0])?.push(`${obj ? `${obj.kind}/${obj.metadata.name}` : "manifest"}: ${message}`);
  }
  return problems;
}

// ---- helpers over rendered objects ----------------------------------------------------------------

type Container = {
  name: string;
  image: string;
  args?: string[];
  restartPolicy?: string;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  startupProbe?: { httpGet?: { path: string; port: string | number } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string }>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
};
type PodSpec = {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown>;
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string } }>;
};

const byKind = (objects: readonly Obj[], kind: string): Obj[] => objects.filter((o) => o.kind === kind);
const one = (objects: readonly Obj[], kind: string): Obj => {
  const found = byKind(objects, kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0]!;
};
const podOf = (deployment: Obj): { labels: Record<string, string>; spec: PodSpec } => {
  const template = (deployment["spec"] as { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } }).template;
  return { labels: template.metadata.labels, spec: template.spec };
};
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
const proxyContainer = (spec: PodSpec): Container => {
  const found = [...spec.containers, ...(spec.initContainers ?? [])].find((c) => c.image.startsWith("mythiq-proxy"));
  if (found === undefined) throw new Error("no mythiq-proxy container");
  return found;
};
const portNumber = (container: Container, port: string | number): number | undefined =>
  typeof port === "number" ? port : container.ports?.find((p) => p.name === port)?.containerPort;

/** The proxy config the pod runs: the ConfigMap mounted at the directory of `--config`. */
function proxyConfig(t: Test, objects: readonly Obj[], spec: PodSpec): ProxyConfig | undefined {
  const container = proxyContainer(spec);
  const configPath = container.args?.[container.args.indexOf("--config") + 1] ?? "";
  const mount = container.volumeMounts?.find((m) => configPath.startsWith(`${m.mountPath}/`));
  t.ok(mount, `the config ${configPath} is on a mounted volume`);
  t.equal(mount?.subPath, undefined, "mounted as a directory, never a subPath (subPath mounts never update)");
  const volume = spec.volumes?.find((v) => v.name === mount?.name);
  const configMap = byKind(objects, "ConfigMap").find((c) => c.metadata.name === volume?.configMap?.name);
  t.ok(configMap, `the ConfigMap ${volume?.configMap?.name} is rendered, under its generated name`);
  const text = (configMap?.["data"] as Record<string, string> | undefined)?.[configPath.slice((mount?.mountPath.length ?? 0) + 1)];
  const loaded = parseConfig(text ?? "", "configmap");
  t.ok(loaded.ok, `the ConfigMap's config is valid: ${loaded.ok ? "" : loaded.problems.map((p) => p.message).join("; ")}`);
  return loaded.ok ? loaded.config : undefined;
}

// ---- tests ---------------------------------------------------------------------------------------

const rendered = new Map<Target, Obj[]>();

if (renderer === undefined) {
  t.fail("no kustomize v4/v5 renderer: install kubectl ≥ 1.27 or kustomize (.ci/run does; see docs/deploy.md)");
} else {
  registerTests();
}

function registerTests(): void {
  t.test(`every kustomization renders (${renderer?.name ?? "no renderer"})`, async (t) => {
    for (const target of TARGETS) {
      const objects = render(target);
      rendered.set(target, objects);
      t.ok(objects.length >= 7, `${target}: ${objects.length} objects`);
    }
  });

  t.test("every rendered object validates against the Kubernetes API schemas", async (t) => {
    const all = TARGETS.flatMap((target) => (rendered.get(target) ?? []).map((obj) => ({ target, obj })));
    const problems = await schemaProblems(all.map((o) => o.obj));
    for (const target of TARGETS) {
      t.same(problems.filter((_, i) => all[i]?.target === target).flat(), [], `${target}: valid`);
    }
  });

  t.test("the validation catches wrong types, missing fields and unknown fields", async (t) => {
    const good = one(rendered.get("deploy/base") ?? [], "Deployment");
    type Mutable = Obj & { spec: { template: { spec: Record<string, unknown> & { containers: Array<Record<string, unknown>> } } } };
    const broken = (change: (pod: Mutable["spec"]["template"]["spec"], container: Record<string, unknown>) => void): Obj => {
      const copy = structuredClone(good) as Mutable;
      change(copy.spec.template.spec, copy.spec.template.spec.containers[0]!);
      return copy;
    };
    const cases: Array<[string, Obj, RegExp]> = [
      ["a string where an integer goes", broken((_, c) => ((c["ports"] as Array<Record<string, unknown>>)[0]!["containerPort"] = "8080")), /containerPort must be integer/],
      ["a missing required field", broken((_, c) => delete c["name"]), /must have required property '?name/],
      ["a value outside its enum", broken((_, c) => ((c["ports"] as Array<Record<string, unknown>>)[0]!["protocol"] = "QUIC")), /protocol|QUIC/],
      ["a misspelt field, deep inside", broken((_, c) => ((c["securityContext"] as Record<string, unknown>)["readOnlyRootFileSystem"] = true)), /readOnlyRootFileSystem.* does not exist/],
      ["an unknown field", broken((pod) => (pod["terminationGracePeriod"] = 30)), /terminationGracePeriod.* does not exist/],
    ];
    const problems = await schemaProblems([good, ...cases.map(([, obj]) => obj)]);
    t.same(problems[0], [], "the unbroken object passes");
    cases.forEach(([name, , message], i) => t.match((problems[i + 1] ?? []).join("\n"), message, name));
  });

  t.test("the standalone base: probes, ports, drain, security, selectors", async (t) => {
    const objects = rendered.get("deploy/base") ?? [];
    const deployment = one(objects, "Deployment");
    const { labels, spec } = podOf(deployment);
    const proxy = proxyContainer(spec);
    const config = proxyConfig(t, objects, spec);
    if (config === undefined) return;

    t.equal(portNumber(proxy, "http"), config.listen.port, "container port `http` is listen.port");
    t.equal(portNumber(proxy, "admin"), config.admin.port, "container port `admin` is admin.port");
    t.equal(config.listen.host, "0.0.0.0", "listen is reachable through the Service");
    t.equal(config.admin.host, "0.0.0.0", "admin is reachable by the kubelet and Prometheus");
    t.equal(proxy.readinessProbe?.httpGet?.path, "/readyz");
    t.equal(portNumber(proxy, proxy.readinessProbe?.httpGet?.port ?? ""), config.admin.port, "readiness on the admin port");
    t.equal(proxy.livenessProbe?.httpGet?.path, "/healthz");
    t.equal(portNumber(proxy, proxy.livenessProbe?.httpGet?.port ?? ""), config.admin.port, "liveness on the admin port");

    const preStop = Number(proxy.lifecycle?.preStop?.exec?.command.at(-1) ?? 0);
    const grace = spec.terminationGracePeriodSeconds ?? 30;
    t.ok(grace * 1000 > preStop * 1000 + config.server.drain_timeout + 5000, `grace ${grace}s > preStop ${preStop}s + drain_timeout ${config.server.drain_timeout / 1000}s + 5s`);
    t.not(proxy.image.split(":")[1] ?? "latest", "latest", "the image tag is pinned");
    t.ok(proxy.resources?.requests?.["memory"] && proxy.resources.limits?.["memory"] && proxy.resources.requests["cpu"], "memory and cpu requests, memory limit");

    const service = one(objects, "Service");
    const serviceSpec = service["spec"] as { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string | number }> };
    t.ok(selects(serviceSpec.selector, labels), "the Service selects the pods");
    t.same(serviceSpec.ports.map((p) => portNumber(proxy, p.targetPort)), [config.listen.port], "the Service exposes the listen port only");
    for (const kind of ["PodDisruptionBudget", "PodMonitor"]) {
      const selector = ((one(objects, kind)["spec"] as { selector: { matchLabels: Record<string, string> } }).selector).matchLabels;
      t.ok(selects(selector, labels), `the ${kind} selects the pods`);
    }
    const policy = one(objects, "NetworkPolicy")["spec"] as { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[] };
    t.ok(selects(policy.podSelector.matchLabels, labels), "the NetworkPolicy selects the pods");
    t.same(policy.policyTypes, ["Ingress", "Egress"], "ingress and egress are both restricted");
    const monitor = one(objects, "PodMonitor");
    t.equal(monitor.metadata.name, "mythiq-proxy", "job <namespace>/mythiq-proxy, as the alert rules expect");
    const endpoint = (monitor["spec"] as { podMetricsEndpoints: Array<{ port: string; path: string }> }).podMetricsEndpoints[0];
    t.equal(portNumber(proxy, endpoint?.port ?? ""), config.admin.port, "scraped on the admin port");
    t.equal(endpoint?.path, "/metrics");
    t.equal(spec.serviceAccountName, one(objects, "ServiceAccount").metadata.name, "runs as its own ServiceAccount");
    t.equal(spec.automountServiceAccountToken, false, "no Kubernetes API token");
    t.equal(config.keys["default"]?.source, "file", "the key from the mounted Secret");
  });

  t.test("every container runs locked down", async (t) => {
    for (const target of TARGETS) {
      for (const deployment of byKind(rendered.get(target) ?? [], "Deployment")) {
        const { spec } = podOf(deployment);
        t.match(spec.securityContext, { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } }, `${target}: pod`);
        for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
          t.match(
            c.securityContext,
            { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
            `${target}: container ${c.name}`,
          );
        }
      }
    }
  });

  t.test("deploy/ adds the alert rules to the base", async (t) => {
    const objects = rendered.get("deploy") ?? [];
    const rule = one(objects, "PrometheusRule");
    t.equal(rule.metadata.name, "mythiq-proxy");
    t.equal(one(objects, "Deployment").metadata.name, "mythiq-proxy");
  });

  t.test("the Vault overlay: Kubernetes auth with the pod's ServiceAccount token, egress to Vault", async (t) => {
    const objects = rendered.get("deploy/overlays/vault") ?? [];
    const { spec } = podOf(one(objects, "Deployment"));
    const config = proxyConfig(t, objects, spec);
    const key = config?.keys["default"];
    t.equal(key?.source, "vault");
    if (key?.source === "vault") t.match(key.vault.auth, { method: "kubernetes", role: "mythiq-proxy" });
    t.equal(spec.automountServiceAccountToken, true, "the ServiceAccount token is mounted for the Vault login");
    t.equal(spec.serviceAccountName, "mythiq-proxy");
    t.notOk(spec.volumes?.some((v) => v.secret?.secretName === "mythiq-api-key"), "no key Secret is needed");
    t.notOk(proxyContainer(spec).volumeMounts?.some((m) => m.name === "api-key"));
    const egress = byKind(objects, "NetworkPolicy").flatMap((p) => (p["spec"] as { egress?: Array<{ ports?: Array<{ port: number }> }> }).egress ?? []);
    t.ok(egress.some((rule) => rule.ports?.some((p) => p.port === 8200)), "egress to Vault's port");
    t.equal(byKind(objects, "ConfigMap").length, 1, "the overlay's config replaces the base's");
  });

  t.test("the AWS overlay: IRSA role on the ServiceAccount, key from Secrets Manager", async (t) => {
    const objects = rendered.get("deploy/overlays/aws") ?? [];
    const account = one(objects, "ServiceAccount");
    t.match(account.metadata.annotations?.["eks.amazonaws.com/role-arn"], /^arn:aws:iam::\d{12}:role\//, "the IRSA annotation");
    const { spec } = podOf(one(objects, "Deployment"));
    t.equal(spec.serviceAccountName, account.metadata.name);
    const config = proxyConfig(t, objects, spec);
    t.equal(config?.keys["default"]?.source, "aws");
    t.notOk(spec.volumes?.some((v) => v.secret?.secretName === "mythiq-api-key"), "no key Secret is needed");
  });

  t.test("the sidecar example: app and proxy in one pod, proxy on loopback as a native sidecar", async (t) => {
    const objects = rendered.get("deploy/examples/sidecar") ?? [];
    const { labels, spec } = podOf(one(objects, "Deployment"));
    const proxy = proxyContainer(spec);
    t.ok(spec.initContainers?.includes(proxy), "the proxy is an init container…");
    t.equal(proxy.restartPolicy, "Always", "…with restartPolicy Always: started before the app, stopped after it");
    t.equal(proxy.startupProbe?.httpGet?.path, "/readyz", "the app starts once the proxy holds its key");
    t.ok(spec.containers.some((c) => !c.image.startsWith("mythiq-proxy")), "the web app container");
    const config = proxyConfig(t, objects, spec);
    if (config === undefined) return;
    t.equal(config.listen.host, "127.0.0.1", "only the pod's own containers reach the proxy");
    t.equal(portNumber(proxy, proxy.readinessProbe?.httpGet?.port ?? ""), config.admin.port);
    const grace = spec.terminationGracePeriodSeconds ?? 30;
    t.ok(grace * 1000 > config.server.drain_timeout + 5000, "the grace period covers the proxy's drain");
    const service = one(objects, "Service")["spec"] as { selector: Record<string, string>; ports: Array<{ targetPort: string }> };
    t.ok(selects(service.selector, labels));
    t.notOk(service.ports.some((p) => portNumber(proxy, p.targetPort) !== undefined), "the Service does not expose the proxy");
    const monitor = one(objects, "PodMonitor");
    const endpoint = (monitor["spec"] as { podMetricsEndpoints: Array<{ port: string }> }).podMetricsEndpoints[0];
    t.equal(portNumber(proxy, endpoint?.port ?? ""), config.admin.port, "Prometheus scrapes the sidecar's admin port");
  });
}
