import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { SERVER_SETTINGS } from "../server/config.js";
import type { SettingSpec } from "../shared/settings.js";
import { ensureHelm, helmTemplate, HELM_VERSION } from "./harness/helm.js";
import { envOf, knownProperties, matches, modelOf, unknownKeys, workloadsOf, type Json } from "./harness/manifests.js";
import { REPO_ROOT } from "./harness/processes.js";

/**
 * The Helm chart (deploy/helm/warren), rendered by the real helm (`helm template`, no cluster)
 * with the default values and with production-like ones (ci/cluster-values.yaml), then each
 * document checked against the Kubernetes schema of its kind and the documents against each
 * other and the server's settings.
 */

const CHART = join(REPO_ROOT, "deploy", "helm", "warren");
const CLUSTER_VALUES = join(CHART, "ci", "cluster-values.yaml");
const specs = Object.values(SERVER_SETTINGS as Record<string, SettingSpec<unknown>>);

function render(options: Parameters<typeof helmTemplate>[1] = {}): Json[] {
  return parseAllDocuments(helmTemplate(CHART, options))
    .map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS() as Json | null;
    })
    .filter((b): b is Json => b !== null);
}

/** The checks every rendering passes. */
async function checkRendering(docs: Json[]): Promise<void> {
  const known = knownProperties();
  for (const body of docs) {
    if (body["kind"] === "ServiceMonitor") continue; // a CRD: checked below
    const Model = await modelOf(body);
    expect(Model, `${body["apiVersion"]} ${body["kind"]}`).toBeDefined();
    expect(() => new Model(body).validate(), `${body["kind"]} ${body["metadata"]["name"]}`).not.toThrow();
    expect(unknownKeys(body, known, String(body["kind"]))).toEqual([]);
  }
  const resources = docs.map((body) => ({ body }));
  const pods = workloadsOf(resources);
  const ofKind = (kind: string) => docs.filter((d) => d["kind"] === kind);
  // Services select pods that exist, on ports they have.
  for (const service of ofKind("Service")) {
    const selected = pods.filter((w) => matches(service["spec"]["selector"], w.labels));
    expect(selected.length, `Service ${service["metadata"]["name"]} selects pods`).toBeGreaterThan(0);
    for (const port of service["spec"]["ports"]) {
      for (const w of selected) {
        const containerPorts = w.pod["containers"].flatMap((c: Json) => c.ports ?? []);
        expect(containerPorts.some((p: Json) => p.name === (port.targetPort ?? port.port)), `${service["metadata"]["name"]}:${port.name}`).toBe(true);
      }
    }
  }
  // The server: real settings with valid values; secrets that exist (in the chart's Secret, or named existing one).
  const server = ofKind("Deployment").find((d) => d["metadata"]["name"].endsWith("-server"))!;
  const container = server["spec"]["template"]["spec"]["containers"][0];
  const env = envOf(container);
  for (const [name, { value, from }] of env) {
    if (name === "POD_IP" || name === "REDIS_PASSWORD") continue;
    const spec = specs.find((s) => s.env === name);
    expect(spec, `${name} is a setting of warren-server`).toBeDefined();
    if (!from && !name.endsWith("_CERT") && !name.endsWith("_KEY")) expect(() => spec!.parse(value), `${name}=${value}`).not.toThrow();
  }
  const secrets = new Map(ofKind("Secret").map((s) => [s["metadata"]["name"], new Set(Object.keys(s["stringData"] ?? {}))]));
  for (const e of container["env"]) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref && secrets.has(ref.name)) expect(secrets.get(ref.name)!.has(ref.key), `Secret ${ref.name} has ${ref.key}`).toBe(true);
  }
  // Probes on the metrics port; the grace period covers the drain.
  expect(container["livenessProbe"]["httpGet"]).toEqual({ path: "/healthz", port: "metrics" });
  expect(container["readinessProbe"]["httpGet"]).toEqual({ path: "/readyz", port: "metrics" });
  const drainMs = SERVER_SETTINGS.drainDelay.parse(env.get("WARREN_DRAIN_DELAY")!.value) + SERVER_SETTINGS.shutdownTimeout.parse(env.get("WARREN_SHUTDOWN_TIMEOUT")!.value);
  expect(server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] * 1000).toBeGreaterThan(drainMs);
  // One public Service: HTTPS on 443, which agents use too unless a separate agent port is set
  // (then the agent URL names it).
  const publicServices = ofKind("Service").filter((s) => s["spec"]["type"] === "LoadBalancer");
  expect(publicServices.length).toBe(1);
  const ports = new Map<string, Json>(publicServices[0]!["spec"]["ports"].map((p: Json) => [p.name, p]));
  expect(ports.get("https")).toMatchObject({ port: 443, targetPort: "http" });
  const agentUrl = env.get("WARREN_PUBLIC_AGENT_URL")?.value;
  if (agentUrl === undefined) {
    expect(ports.has("agents")).toBe(false);
    expect(env.get("WARREN_AGENT_ADDR")!.value).toBe("off");
  } else {
    expect(ports.get("agents")!["port"]).toBe(Number(new URL(agentUrl).port));
    expect(new URL(agentUrl).hostname).toBe(env.get("WARREN_ROOT_DOMAIN")!.value);
  }
  // Pods run as non-root with read-only root filesystems.
  for (const w of pods) {
    expect(w.pod["securityContext"]["runAsNonRoot"], w.name).toBe(true);
    for (const c of w.pod["containers"]) expect(c.securityContext, `${w.name}/${c.name}`).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
  }
  // The budget selects the servers and lets one go at a time.
  const pdb = ofKind("PodDisruptionBudget")[0]!;
  expect(matches(pdb["spec"]["selector"]["matchLabels"], server["spec"]["template"]["metadata"]["labels"])).toBe(true);
  if (server["spec"]["replicas"] > 1) expect(pdb["spec"]["maxUnavailable"]).toBeLessThan(server["spec"]["replicas"]);
}

describe("Helm chart (deploy/helm/warren)", () => {
  it(`is rendered by the real helm ${HELM_VERSION}`, () => {
    ensureHelm();
  }, 120_000);

  it("renders with the default values into valid, consistent manifests: servers, one public Service, Redis with AOF on a volume", async () => {
    const docs = render();
    await checkRendering(docs);
    const kinds = docs.map((d) => `${d["kind"]}/${d["metadata"]["name"]}`).sort();
    expect(kinds).toEqual(
      [
        "Deployment/warren-server",
        "NetworkPolicy/warren-redis",
        "NetworkPolicy/warren-server",
        "PodDisruptionBudget/warren-server",
        "Secret/warren",
        "Service/warren",
        "Service/warren-private",
        "Service/warren-redis",
        "StatefulSet/warren-redis",
      ].sort(),
    );
    const publicPorts = docs.find((d) => d["metadata"]["name"] === "warren" && d["kind"] === "Service")!["spec"]["ports"].map((p: Json) => `${p.name}:${p.port}`);
    // Agents come through 443 with everyone else.
    expect(publicPorts).toEqual(["https:443", "ssh:2222"]);
    // Redis: an append-only file, on a claim; the server reaches it by its Service.
    const redis = docs.find((d) => d["kind"] === "StatefulSet")!;
    expect(redis["spec"]["template"]["spec"]["containers"][0]["args"]).toEqual(expect.arrayContaining(["--appendonly", "yes"]));
    expect(redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]).toBe("1Gi");
    const server = docs.find((d) => d["kind"] === "Deployment")!;
    const env = envOf(server["spec"]["template"]["spec"]["containers"][0]);
    expect(new URL(env.get("WARREN_REDIS_URL")!.value).hostname).toBe("warren-redis");
    // Generated secrets are long enough for the server's checks.
    const secret = docs.find((d) => d["kind"] === "Secret")!["stringData"];
    expect(() => SERVER_SETTINGS.adminToken.parse(secret["admin-token"])).not.toThrow();
    expect(() => SERVER_SETTINGS.secretKey.parse(secret["secret-key"])).not.toThrow();
    expect(() => SERVER_SETTINGS.clusterSecret.parse(secret["cluster-secret"])).not.toThrow();
  });

  it("renders with cluster values: existing Secret, Ingress for HTTPS on both names, ServiceMonitor, SSH on 22", async () => {
    const docs = render({ values: [CLUSTER_VALUES] });
    await checkRendering(docs);
    expect(docs.some((d) => d["kind"] === "Secret")).toBe(false);
    const server = docs.find((d) => d["kind"] === "Deployment")!;
    const container = server["spec"]["template"]["spec"]["containers"][0];
    expect(container["image"]).toBe("registry.corp.example/warren-server:0.1.0");
    expect(server["spec"]["replicas"]).toBe(4);
    const refs = container["env"].filter((e: Json) => e.valueFrom?.secretKeyRef).map((e: Json) => e.valueFrom.secretKeyRef.name);
    expect(new Set(refs)).toEqual(new Set(["warren-secrets"]));
    // The same host key on every replica, from the existing Secret.
    expect(envOf(container).get("WARREN_SSH_HOST_KEY")!.value).toBe("/etc/warren/ssh/ssh_host_ed25519_key");
    const ingress = docs.find((d) => d["kind"] === "Ingress")!;
    expect(ingress["spec"]["rules"].map((r: Json) => r.host)).toEqual(["ws.corp.example", "*.ws.corp.example"]);
    expect(ingress["spec"]["tls"][0]).toEqual({ hosts: ["ws.corp.example", "*.ws.corp.example"], secretName: "warren-tls" });
    const monitor = docs.find((d) => d["kind"] === "ServiceMonitor")!;
    expect(monitor["apiVersion"]).toBe("monitoring.coreos.com/v1");
    expect(monitor["metadata"]["labels"]["release"]).toBe("prometheus");
    expect(monitor["spec"]["endpoints"]).toEqual([{ port: "metrics", path: "/metrics", interval: "30s" }]);
    const scraped = docs.filter((d) => d["kind"] === "Service" && matches(monitor["spec"]["selector"]["matchLabels"], d["metadata"]["labels"]));
    expect(scraped.some((s) => s["spec"]["ports"].some((p: Json) => p.name === "metrics"))).toBe(true);
    const ssh = docs.find((d) => d["kind"] === "Service" && d["spec"]["type"] === "LoadBalancer")!["spec"]["ports"].find((p: Json) => p.name === "ssh");
    expect(ssh).toEqual({ name: "ssh", port: 22, targetPort: "ssh" });
    expect(docs.find((d) => d["kind"] === "StatefulSet")!["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"]).toBe("fast-ssd");
  });

  it("renders without Redis for one server, or with an external Redis; without SSH when it is off", async () => {
    const alone = render({ set: { replicas: "1", "redis.enabled": "false", "ssh.enabled": "false" } });
    await checkRendering(alone);
    expect(alone.some((d) => d["kind"] === "StatefulSet")).toBe(false);
    const env = envOf(alone.find((d) => d["kind"] === "Deployment")!["spec"]["template"]["spec"]["containers"][0]);
    expect(env.has("WARREN_REDIS_URL")).toBe(false);
    expect(env.get("WARREN_SSH_ADDR")!.value).toBe("off");
    const external = render({ set: { "redis.enabled": "false", "externalRedis.url": "redis+sentinel://:$(REDIS_PASSWORD)@sentinel-0:26379/mymaster" } });
    await checkRendering(external);
    const url = envOf(external.find((d) => d["kind"] === "Deployment")!["spec"]["template"]["spec"]["containers"][0]).get("WARREN_REDIS_URL")!.value;
    expect(url).toBe("redis+sentinel://:0123456789abcdef0123456789abcdef@sentinel-0:26379/mymaster");
  });

  it("renders a separate agent port when service.agentPort is set", async () => {
    const docs = render({ set: { "service.agentPort": "8150" } });
    await checkRendering(docs);
    const publicPorts = docs.find((d) => d["metadata"]["name"] === "warren" && d["kind"] === "Service")!["spec"]["ports"].map((p: Json) => `${p.name}:${p.port}`);
    expect(publicPorts).toEqual(["https:443", "agents:8150", "ssh:2222"]);
    const env = envOf(docs.find((d) => d["kind"] === "Deployment")!["spec"]["template"]["spec"]["containers"][0]);
    expect(env.get("WARREN_PUBLIC_AGENT_URL")!.value).toBe("https://ws.example.com:8150");
    expect(env.get("WARREN_AGENT_ADDR")!.value).toBe("0.0.0.0:8150");
  });

  it("refuses bad values with helm's own message: the schema, and several servers without Redis", () => {
    expect(() => render({ set: { replicas: "0" } })).toThrow(/at '\/replicas': minimum: got 0, want 1/);
    expect(() => render({ set: { replica: "3" } })).toThrow(/additional properties 'replica' not allowed/);
    expect(() => render({ set: { "secrets.adminToken": "short" } })).toThrow(/adminToken/);
    expect(() => render({ set: { drainDelay: "soon" } })).toThrow(/drainDelay/);
    expect(() => render({ set: { "redis.enabled": "false" } })).toThrow(/replicas > 1 shares state through Redis: set redis.enabled=true or externalRedis.url/);
  });
});
