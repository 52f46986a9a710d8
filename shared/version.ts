declare const __WARREN_VERSION__: string | undefined;

/** The program version, injected by the build (scripts/build.mjs); "dev" when run from source. */
export const VERSION: string = typeof __WARREN_VERSION__ === "string" ? __WARREN_VERSION__ : "0.0.0-dev";
