import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseServerList } from "../agent/config.js";
import { SERVER_SETTINGS } from "../server/config.js";
import { parseReadableFile, type SettingSpec } from "../shared/settings.js";
import { envOf, knownProperties, matches, modelOf, unknownKeys, workloadsOf, type Json } from "./harness/manifests.js";
import { REPO_ROOT } from "./harness/processes.js";

/**
 * The Kubernetes manifests under deploy/, checked without a cluster: each document against the
 * Kubernetes schema of its kind (kubernetes-models), then across documents: selectors, ports,
 * probes, settings, secrets, security contexts, and the sample workspace's agent download.
 */

const DEPLOY = join(REPO_ROOT, "deploy");

interface Doc {
  readonly file: string;
  readonly body: Json;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    // The Helm chart's templates are not YAML until helm renders them (helm.test.ts).
    e.isDirectory() ? (e.name === "helm" ? [] : yamlFiles(join(dir, e.name))) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

function load(): Doc[] {
  const docs: Doc[] = [];
  for (const path of yamlFiles(DEPLOY)) {
    for (const doc of parseAllDocuments(readFileSync(path, "utf8"))) {
      expect(doc.errors, relative(REPO_ROOT, path)).toEqual([]);
      const body = doc.toJS() as Json | null;
      if (body) docs.push({ file: relative(DEPLOY, path), body });
    }
  }
  return docs;
}

const docs = load();
const resources = docs.filter((d) => d.body["kind"] !== "Kustomization");
const ofKind = (kind: string) => resources.filter((d) => d.body["kind"] === kind).map((d) => d.body);
const named = (kind: string, name: string) => ofKind(kind).find((b) => b["metadata"]["name"] === name);
const workloads = () => workloadsOf(resources);








const server = named("Deployment", "warren-server")!;
const serverPod = server["spec"]["template"]["spec"];
const serverContainer = serverPod["containers"].find((c: Json) => c.name === "warren-server");
const serverEnv = envOf(serverContainer);
const specs = Object.values(SERVER_SETTINGS as Record<string, SettingSpec<unknown>>);
/** A setting's value in the server container: its env, else its default. */
function setting<T>(spec: SettingSpec<T>): T {
  const raw = serverEnv.get(spec.env)?.value;
  return raw === undefined ? spec.default! : spec.parse(raw);
}
const portOf = (spec: SettingSpec<unknown>) => (setting(spec) as { host: string; port: number }).port;

describe("Kubernetes manifests (deploy/)", () => {
  it("every document is valid against the Kubernetes schema of its kind, with no unknown field", async () => {
    const known = knownProperties();
    for (const { file, body } of resources) {
      const Model = await modelOf(body);
      expect(Model, `${file}: ${body["apiVersion"]} ${body["kind"]}`).toBeDefined();
      expect(() => new Model(body).validate(), `${file}: ${body["kind"]} ${body["metadata"]?.["name"]}`).not.toThrow();
      expect(unknownKeys(body, known, `${file}:${body["kind"]}`)).toEqual([]);
    }
    expect(resources.length).toBeGreaterThanOrEqual(10);
  });

  it("the kustomization lists every manifest of deploy/ (examples apart), and they exist", () => {
    const kustomization = docs.find((d) => d.body["kind"] === "Kustomization")!.body;
    const listed = (kustomization["resources"] as string[]).sort();
    for (const file of listed) expect(existsSync(join(DEPLOY, file)), file).toBe(true);
    const top = readdirSync(DEPLOY).filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml");
    expect(listed).toEqual(top.sort());
  });

  it("has one public Service (one address for the one hostname) for HTTPS (browsers and agents) and SSH, and a private one", () => {
    const ports = (name: string) => (named("Service", name)?.["spec"]["ports"] ?? []).map((p: Json) => `${p.port}->${p.targetPort ?? p.port}`);
    expect(ports("warren")).toEqual(["443->http", "2222->ssh"]);
    expect(ports("warren-private"), "warren-private").toEqual(expect.arrayContaining(["8155->private", "8151->metrics"]));
    // The public one is reachable from outside the cluster, and the only one; the private one only from pods.
    expect(ofKind("Service").filter((s) => s["spec"]["type"] === "LoadBalancer").map((s) => s["metadata"]["name"])).toEqual(["warren"]);
    expect(named("Service", "warren-private")!["spec"]["clusterIP"]).toBe("None");
    // The addresses the server hands out are on that Service's host and ports.
    const publicUrl = new URL(setting(SERVER_SETTINGS.publicUrl)!);
    expect(publicUrl.protocol).toBe("https:");
    // Agents come through the HTTPS port: no agent listener, and the agent address is the public URL.
    expect(setting(SERVER_SETTINGS.agentAddr)).toBeUndefined();
    expect(setting(SERVER_SETTINGS.publicAgentUrl)).toBeUndefined();
  });

  it("every Service, PodDisruptionBudget and NetworkPolicy selects pods that exist, on ports they have", () => {
    const pods = workloads();
    for (const service of ofKind("Service")) {
      const selected = pods.filter((w) => matches(service["spec"]["selector"], w.labels));
      expect(selected.length, `Service ${service["metadata"]["name"]} selects pods`).toBeGreaterThan(0);
      for (const port of service["spec"]["ports"]) {
        for (const w of selected) {
          const containerPorts = w.pod["containers"].flatMap((c: Json) => c.ports ?? []);
          const target = port.targetPort ?? port.port;
          expect(
            containerPorts.some((p: Json) => p.name === target || p.containerPort === target),
            `Service ${service["metadata"]["name"]} port ${port.name} -> ${target} on ${w.name}`,
          ).toBe(true);
        }
      }
    }
    for (const kind of ["PodDisruptionBudget", "NetworkPolicy"]) {
      for (const doc of ofKind(kind)) {
        const selector = (kind === "PodDisruptionBudget" ? doc["spec"]["selector"] : doc["spec"]["podSelector"])["matchLabels"];
        const selected = pods.filter((w) => matches(selector, w.labels));
        expect(selected.length, `${kind} ${doc["metadata"]["name"]}`).toBeGreaterThan(0);
        if (kind === "NetworkPolicy") {
          const names = selected.flatMap((w) => w.pod["containers"].flatMap((c: Json) => (c.ports ?? []).map((p: Json) => p.name)));
          for (const rule of doc["spec"]["ingress"]) for (const p of rule.ports ?? []) expect(names, `${kind} port ${p.port}`).toContain(p.port);
        }
      }
    }
    // The budget lets at most one server go at a time, and a rollout never goes below the replicas.
    const pdb = named("PodDisruptionBudget", "warren-server")!;
    expect(matches(pdb["spec"]["selector"]["matchLabels"], server["spec"]["template"]["metadata"]["labels"])).toBe(true);
    expect(server["spec"]["replicas"]).toBeGreaterThanOrEqual(2);
    expect(pdb["spec"]["maxUnavailable"]).toBeLessThan(server["spec"]["replicas"]);
    expect(server["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"]).toBe(0);
  });

  it("the server's settings are real settings with valid values, listening on 0.0.0.0 on the container's ports", () => {
    const helpers = new Set(["POD_IP", "REDIS_PASSWORD"]);
    for (const [name, { value, from }] of serverEnv) {
      if (helpers.has(name)) continue;
      const spec = specs.find((s) => s.env === name);
      expect(spec, `${name} is a setting of warren-server`).toBeDefined();
      if (spec!.parse === parseReadableFile) {
        // A file: it must lie on a mounted volume.
        const mounts: Json[] = serverContainer["volumeMounts"];
        expect(mounts.some((m) => value.startsWith(`${m["mountPath"]}/`)), `${name}=${value} is on a volume`).toBe(true);
        continue;
      }
      if (!from) expect(() => spec!.parse(value), `${name}=${value}`).not.toThrow();
    }
    const containerPorts = new Map<string, number>(serverContainer["ports"].map((p: Json) => [p.name, p.containerPort]));
    const listeners = { http: SERVER_SETTINGS.httpAddr, metrics: SERVER_SETTINGS.observabilityAddr, private: SERVER_SETTINGS.privateAddr };
    for (const [portName, spec] of Object.entries(listeners)) {
      expect((setting(spec) as { host: string }).host, spec.env).toBe("0.0.0.0");
      expect(containerPorts.get(portName), `${portName} port = ${spec.env}`).toBe(portOf(spec));
    }
    const ssh = setting(SERVER_SETTINGS.sshAddr)!;
    expect(ssh.host).toBe("0.0.0.0");
    expect(containerPorts.get("ssh")).toBe(ssh.port);
    // Cluster mode, with the secrets from a Secret and the advertised address from the pod IP.
    for (const name of ["WARREN_ADMIN_TOKEN", "WARREN_CLUSTER_SECRET", "WARREN_SECRET_KEY"]) expect(serverEnv.get(name)?.from?.["secretKeyRef"], name).toBeDefined();
    const podIp = serverContainer["env"].find((e: Json) => e.name === "POD_IP");
    expect(podIp.valueFrom.fieldRef.fieldPath).toBe("status.podIP");
    expect(serverContainer["env"].find((e: Json) => e.name === "WARREN_PRIVATE_ADVERTISE_ADDR").value).toBe(`$(POD_IP):${portOf(SERVER_SETTINGS.privateAddr)}`);
    // TLS on the private API needs the certificate, as the server checks at start.
    if (setting(SERVER_SETTINGS.privateTls)) expect(serverEnv.has("WARREN_TLS_CERT") && serverEnv.has("WARREN_TLS_KEY")).toBe(true);
    // Redis: the Service of the Redis in these manifests.
    const redisUrl = new URL(serverEnv.get("WARREN_REDIS_URL")!.value);
    const redisService = named("Service", redisUrl.hostname);
    expect(redisService, `a Service named ${redisUrl.hostname}`).toBeDefined();
    expect(redisService!["spec"]["ports"].map((p: Json) => p.port)).toContain(Number(redisUrl.port));
    expect(() => SERVER_SETTINGS.redisUrl.parse(redisUrl.href)).not.toThrow();
  });

  it("probes /healthz and /readyz on the metrics port, and gives a drain its full time before SIGKILL", () => {
    const metricsPort = portOf(SERVER_SETTINGS.observabilityAddr);
    const resolve = (port: string | number) => (typeof port === "number" ? port : serverContainer["ports"].find((p: Json) => p.name === port)?.containerPort);
    expect(serverContainer["livenessProbe"]["httpGet"]["path"]).toBe("/healthz");
    expect(resolve(serverContainer["livenessProbe"]["httpGet"]["port"])).toBe(metricsPort);
    expect(serverContainer["readinessProbe"]["httpGet"]["path"]).toBe("/readyz");
    expect(resolve(serverContainer["readinessProbe"]["httpGet"]["port"])).toBe(metricsPort);
    const drainMs = setting(SERVER_SETTINGS.drainDelay) + setting(SERVER_SETTINGS.shutdownTimeout);
    expect(serverPod["terminationGracePeriodSeconds"] * 1000).toBeGreaterThan(drainMs);
    // Readiness fails within the drain delay: the load balancers notice before the server stops accepting.
    const probe = serverContainer["readinessProbe"];
    expect((probe.periodSeconds ?? 10) * (probe.failureThreshold ?? 3) * 1000).toBeLessThan(setting(SERVER_SETTINGS.drainDelay));
  });

  it("runs Redis as a system of record: AOF fsynced every second, its directory on a persistent volume", () => {
    const redis = named("StatefulSet", "warren-redis")!;
    const container = redis["spec"]["template"]["spec"]["containers"].find((c: Json) => c.name === "redis");
    const args: string[] = container["args"];
    const arg = (name: string) => args[args.indexOf(name) + 1];
    expect(arg("--appendonly")).toBe("yes");
    expect(arg("--appendfsync")).toBe("everysec");
    const mount = container["volumeMounts"].find((m: Json) => m.mountPath === arg("--dir"));
    expect(mount, "the Redis --dir is a mounted volume").toBeDefined();
    const claim = redis["spec"]["volumeClaimTemplates"].find((c: Json) => c.metadata.name === mount.name);
    expect(claim, "the volume is a PersistentVolumeClaim of the StatefulSet").toBeDefined();
    // Not an emptyDir that dies with the pod.
    expect((redis["spec"]["template"]["spec"]["volumes"] ?? []).map((v: Json) => v.name)).not.toContain(mount.name);
  });

  it("runs every pod as non-root, every container with a read-only root filesystem and no privilege escalation", () => {
    for (const w of workloads()) {
      expect(w.pod["securityContext"]?.["runAsNonRoot"], `${w.name} runAsNonRoot`).toBe(true);
      for (const c of [...(w.pod["initContainers"] ?? []), ...w.pod["containers"]]) {
        expect(c.securityContext?.readOnlyRootFilesystem, `${w.name}/${c.name} readOnlyRootFilesystem`).toBe(true);
        expect(c.securityContext?.allowPrivilegeEscalation, `${w.name}/${c.name} allowPrivilegeEscalation`).toBe(false);
        // Mounts name a volume of the pod (or the StatefulSet's claim template "data").
        for (const m of c.volumeMounts ?? []) expect((w.pod["volumes"] ?? []).map((v: Json) => v.name).concat(["data"]), `${w.name}/${c.name} mounts ${m.name}`).toContain(m.name);
      }
    }
  });

  it("every Secret key the manifests read is in the example Secrets", () => {
    const defined = new Map<string, Set<string>>(ofKind("Secret").map((s) => [s["metadata"]["name"], new Set(Object.keys({ ...s["stringData"], ...s["data"] }))]));
    const wanted: Array<[string, string | undefined]> = [];
    for (const w of workloads()) {
      for (const c of [...(w.pod["initContainers"] ?? []), ...w.pod["containers"]]) {
        for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) wanted.push([e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key]);
      }
      for (const v of w.pod["volumes"] ?? []) {
        if (!v.secret) continue;
        const items: Json[] | undefined = v.secret.items;
        if (items) for (const item of items) wanted.push([v.secret.secretName, item["key"]]);
        else wanted.push([v.secret.secretName, undefined]);
      }
    }
    for (const [name, key] of wanted) {
      expect(defined.has(name), `Secret ${name}`).toBe(true);
      if (key) expect(defined.get(name)!.has(key), `Secret ${name} key ${key}`).toBe(true);
    }
    // TLS: the mounted kubernetes.io/tls Secret holds the files the settings name.
    expect(serverEnv.get("WARREN_TLS_CERT")!.value.endsWith("/tls.crt") && defined.get("warren-tls")!.has("tls.crt")).toBe(true);
  });

  it("the sample workspace downloads the agent from the server in an init container, then runs the app under it", () => {
    const pod = named("Pod", "workspace-demo")!["spec"];
    const [init] = pod["initContainers"];
    const script = init.command.join(" ");
    const publicUrl = setting(SERVER_SETTINGS.publicUrl)!;
    expect(script).toContain(`curl -fsSL ${publicUrl}/-/agent/install.sh | WARREN_INSTALL_DIR=`);
    const installDir = /WARREN_INSTALL_DIR=(\S+)/.exec(script)![1]!;
    const shared = init.volumeMounts.find((m: Json) => m.mountPath === installDir);
    expect(shared, "the agent is installed on a volume").toBeDefined();
    expect(pod["volumes"].find((v: Json) => v.name === shared.name).emptyDir).toBeDefined();
    const workspace = pod["containers"][0];
    expect(workspace.volumeMounts.find((m: Json) => m.name === shared.name).mountPath).toBe(installDir);
    expect(workspace.command.slice(0, 3)).toEqual([`${installDir}/warren-agent`, "run", "--"]);
    const env = envOf(workspace);
    // The agent dials the public URL, on the public Service's HTTPS port.
    const agentUrl = env.get("WARREN_SERVER")!.value;
    const [url] = parseServerList(agentUrl);
    expect(url!.origin).toBe(new URL(publicUrl).origin);
    expect(named("Service", "warren")!["spec"]["ports"].find((p: Json) => p.targetPort === "http").port).toBe(Number(url!.port || 443));
    expect(env.get("WARREN_TOKEN")!.from?.["secretKeyRef"]).toBeDefined();
  });
});
