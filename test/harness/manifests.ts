import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { REPO_ROOT } from "./processes.js";

// Checks of Kubernetes manifests without a cluster, shared by the kustomize tree (deploy.test.ts)
// and the rendered Helm chart (helm.test.ts).

// Loose shapes: the schema check has vouched for the structure already.
export type Json = Record<string, any>;

/** Every property name the Kubernetes schemas know: a key outside it is a typo kubectl would drop. */
export function knownProperties(): Set<string> {
  // Resource kinds, and the object metadata they share (apimachinery).
  const dirs = [join(REPO_ROOT, "node_modules", "kubernetes-models", "_schemas"), join(REPO_ROOT, "node_modules", "@kubernetes-models", "apimachinery", "_schemas")];
  const names = new Set<string>(["apiVersion", "kind", "metadata"]);
  for (const dir of dirs) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".mjs"))) {
      for (const [, name] of readFileSync(join(dir, file), "utf8").matchAll(/parentDataProperty:"([^"]+)"/g)) names.add(name!);
    }
  }
  return names;
}

/** Maps whose keys are free (labels, selectors, secret data...): not checked against the schema. */
export const FREE_MAPS = new Set(["labels", "annotations", "matchLabels", "selector", "data", "stringData", "nodeSelector", "limits", "requests"]);

export function unknownKeys(value: unknown, known: Set<string>, path: string): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => unknownKeys(v, known, `${path}[${i}]`));
  if (!value || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const here = `${path}.${k}`;
    if (!known.has(k)) return [here];
    if (FREE_MAPS.has(k) && !(k === "selector" && v && typeof v === "object" && "matchLabels" in v)) return [];
    return unknownKeys(v, known, here);
  });
}

/** The model class of a document: kubernetes-models/<group>/<version>/<Kind>. */
export async function modelOf(body: Json): Promise<new (data: Json) => { validate(): void }> {
  const apiVersion = String(body["apiVersion"]);
  const path = apiVersion.includes("/") ? apiVersion : `v1`;
  const module = (await import(`kubernetes-models/${path}/${body["kind"]}`)) as Record<string, new (data: Json) => { validate(): void }>;
  return module[String(body["kind"])]!;
}

export interface Workload {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly pod: Json;
}

/** Deployments, StatefulSets and bare Pods, with their pod labels and spec. */
export function workloadsOf(resources: ReadonlyArray<{ readonly body: Json }>): Workload[] {
  return resources.flatMap((d) => {
    const b = d.body;
    if (b["kind"] === "Deployment" || b["kind"] === "StatefulSet") {
      return [{ name: b["metadata"]["name"], labels: b["spec"]["template"]["metadata"]["labels"], pod: b["spec"]["template"]["spec"] }];
    }
    if (b["kind"] === "Pod") return [{ name: b["metadata"]["name"], labels: b["metadata"]["labels"], pod: b["spec"] }];
    return [];
  });
}

export const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** A container's env as literal values, with $(VAR) references expanded; value-from entries get a stand-in. */
export function envOf(container: Json): Map<string, { value: string; from?: Json }> {
  const env = new Map<string, { value: string; from?: Json }>();
  for (const e of container["env"] ?? []) {
    if (e.valueFrom) {
      const stand = e.valueFrom.fieldRef?.fieldPath === "status.podIP" ? "10.1.2.3" : e.valueFrom.fieldRef ? "pod-name-0" : "0123456789abcdef0123456789abcdef";
      env.set(e.name, { value: stand, from: e.valueFrom });
      continue;
    }
    const value = String(e.value).replace(/\$\((\w+)\)/g, (_m, name: string) => {
      expect(env.has(name), `${e.name} refers to ${name}, defined before it`).toBe(true);
      return env.get(name)!.value;
    });
    env.set(e.name, { value });
  }
  return env;
}
