// esbuild plugin: resolves optional native modules to stubs that throw when required.
// A Node.js single executable can load no addon and no file from node_modules, and the
// packages that want one (ssh2's cpu-features and sshcrypto.node, debug's supports-color)
// all require it inside try/catch and fall back to plain JavaScript. Without the stubs the
// bundle keeps a require() that fails at run time and Node prints a warning at every start.

/** Modules replaced by a throwing stub, by exact name. */
export const STUBBED_MODULES = ["cpu-features", "supports-color"];

export function nativeStubs() {
  const names = STUBBED_MODULES.map((n) => n.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&")).join("|");
  // Any compiled addon (*.node), e.g. ssh2's ./crypto/build/Release/sshcrypto.node.
  const filter = new RegExp(`^(${names})$|\\.node$`);
  return {
    name: "warren-native-stubs",
    setup(build) {
      build.onResolve({ filter }, (args) => ({ path: args.path, namespace: "warren-native-stub" }));
      build.onLoad({ filter: /.*/, namespace: "warren-native-stub" }, (args) => ({
        contents: `throw new Error(${JSON.stringify(`${args.path} is not available in the single-file warren-agent`)});\n`,
        loader: "js",
      }));
    },
  };
}
