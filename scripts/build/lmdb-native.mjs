// esbuild plugin for the server bundle: lmdb (the embedded store) finds its compiled addon
// with node-gyp-build-optional-packages, which looks in node_modules at run time, and the
// server image has no node_modules. The plugin replaces that loader with one that requires
// the addon from beside the bundle (dist/lmdb-<platform>-<arch>.node), and copies the prebuilt
// N-API addon that npm installed (@lmdb/lmdb-<platform>-<arch>, no compiler, no download)
// there. N-API: one file for every Node version (20, 22, 24).
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** The addon's file name beside the bundle, for this machine. */
export function lmdbAddonName(platform = process.platform, arch = process.arch) {
  return `lmdb-${platform}-${arch}.node`;
}

/** Copies the prebuilt addon of this platform into `outDir`; returns its path. */
export function copyLmdbAddon(outDir) {
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve(`@lmdb/lmdb-${process.platform}-${process.arch}/package.json`));
  const libc = process.report?.getReport?.().header?.glibcVersionRuntime ? "glibc" : "musl";
  const source = join(pkg, `node.napi.${libc}.node`);
  if (!existsSync(source)) throw new Error(`lmdb: no prebuilt N-API addon ${source}`);
  mkdirSync(outDir, { recursive: true });
  const target = join(outDir, lmdbAddonName());
  copyFileSync(source, target);
  return target;
}

export function lmdbNative() {
  return {
    name: "warren-lmdb-native",
    setup(build) {
      // lmdb's CommonJS build: its ES module reads import.meta.url, which a CommonJS bundle lacks.
      build.onResolve({ filter: /^lmdb$/ }, () => ({ path: createRequire(import.meta.url).resolve("lmdb") }));
      build.onResolve({ filter: /^node-gyp-build-optional-packages$/ }, (args) => ({ path: args.path, namespace: "warren-lmdb-native" }));
      build.onLoad({ filter: /.*/, namespace: "warren-lmdb-native" }, () => ({
        contents: `
const { join } = require("node:path");
module.exports = function load() {
  const file = join(__dirname, "lmdb-" + process.platform + "-" + process.arch + ".node");
  try {
    return require(file);
  } catch (err) {
    throw new Error("the embedded store's addon " + file + " cannot be loaded (" + err.message + "): copy it beside the server bundle (npm run build puts it in dist/)");
  }
};
`,
        loader: "js",
      }));
    },
  };
}
