#!/bin/bash
# scripts/bench/side-by-side.sh DIST_A DIST_B: two builds of Warren (each a dist/ folder with
# warren-server.cjs and warren-agent.cjs) run at the same time, each with its own server, agent
# and workspace in front of one bench app, and the same short loads alternate between them for
# ROUNDS rounds (default 6): wrk with Connection: close (16 clients) and keep-alive (64), a
# 256 MiB download and upload with curl. On a shared, noisy machine, two stacks side by side see
# the same noise; compare the medians of the rounds, not one run against another.
#   git worktree add /tmp/base <commit> && (cd /tmp/base && npm ci && npm run build)
#   scripts/bench/side-by-side.sh dist /tmp/base/dist
# Mixing the server of one build with the agent of another tells which side a difference is on.
set -u
A=$(realpath "$1"); B=$(realpath "$2"); ROUNDS=${ROUNDS:-6}
HERE=$(dirname "$(realpath "$0")")
TOKEN=side-by-side-admin-token-0123456789ab
BASE_PORT=${BASE_PORT:-18900}
APP=$BASE_PORT
LOGS=$(mktemp -d /tmp/warren-side-by-side-XXXX)
PIDS=""
cleanup() { kill $PIDS 2>/dev/null; wait 2>/dev/null; rm -rf "$LOGS"; }
trap cleanup EXIT
node "$HERE/../../dist/bench.cjs" --app $APP > "$LOGS/app.log" 2>&1 &
PIDS="$!"
start() { # name dist http-port
  local http=$3 agent=$(($3 + 1)) obs=$(($3 + 2)) data=$(mktemp -d "$LOGS/data-XXXX")
  WARREN_HTTP_ADDR=127.0.0.1:$http WARREN_AGENT_ADDR=127.0.0.1:$agent WARREN_OBSERVABILITY_ADDR=127.0.0.1:$obs \
    WARREN_SSH_ADDR=off WARREN_DRAIN_DELAY=0s WARREN_DATA_DIR=$data WARREN_ADMIN_TOKEN=$TOKEN WARREN_LOG_LEVEL=warn \
    node "$2/warren-server.cjs" > "$LOGS/$1-server.log" 2>&1 &
  PIDS="$PIDS $!"
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$obs/readyz" && break; sleep 0.2; done
  local token
  token=$(curl -s -X POST -H "content-type: application/json" -H "authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$http/warren.v1.WorkspaceService/CreateWorkspace" -d "{\"name\":\"bench\",\"ports\":[{\"port\":$APP}]}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["agentToken"])') || { echo "stack $1 did not start: $(tail -3 "$LOGS/$1-server.log")" >&2; exit 1; }
  WARREN_SERVER=http://127.0.0.1:$agent WARREN_TOKEN=$token WARREN_LOG_LEVEL=warn node "$2/warren-agent.cjs" > "$LOGS/$1-agent.log" 2>&1 &
  PIDS="$PIDS $!"
}
start A "$A" $((BASE_PORT + 1))
start B "$B" $((BASE_PORT + 11))
sleep 3
H="Host: $APP-bench.warren.localhost"
T="X-Warren-Token: $TOKEN"
echo "A: $A"
echo "B: $B"
for r in $(seq "$ROUNDS"); do
  for s in A B; do
    p=$([ $s = A ] && echo $((BASE_PORT + 1)) || echo $((BASE_PORT + 11)))
    close=$(wrk -t2 -c16 -d4s -H "$H" -H "$T" -H "Connection: close" "http://127.0.0.1:$p/" | awk '/Requests\/sec/{print int($2)}')
    keep=$(wrk -t2 -c64 -d4s -H "$H" -H "$T" "http://127.0.0.1:$p/" | awk '/Requests\/sec/{print int($2)}')
    down=$(curl -s -o /dev/null -w '%{speed_download}' -H "$H" -H "$T" "http://127.0.0.1:$p/bytes?n=268435456")
    up=$(head -c 268435456 /dev/zero | curl -s -o /dev/null -w '%{speed_upload}' -H "$H" -H "$T" -X POST --data-binary @- "http://127.0.0.1:$p/sink")
    echo "round $r $s close/s=$close keep-alive/s=$keep download_MB/s=$((${down%.*} / 1000000)) upload_MB/s=$((${up%.*} / 1000000))"
  done
done
