#!/bin/sh
# The long fuzzing run: the property-based and differential tests of test/fuzz/ with many more
# cases than CI runs. FUZZ_RUNS sets the cases per property (default 2000); FUZZ_SEED replays
# the seed a failure printed. Needs a build (npm run build) like every test.
set -eu
cd "$(dirname "$0")/.."
FUZZ_RUNS="${FUZZ_RUNS:-2000}" exec npx vitest run test/fuzz/ "$@"
