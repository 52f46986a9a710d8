#!/bin/sh
# Any other CI system (Jenkins, Buildkite, CircleCI, a cron job...): one line, with an
# enrollment token stored as a masked secret variable WARREN_ENROLL_TOKEN. Make one with
#   curl -H "Authorization: Bearer $WARREN_ACCESS_TOKEN" -H 'content-type: application/json' \
#     https://ws.example.com/warren.v1.UserService/CreateEnrollmentToken \
#     -d '{"name":"jenkins","maxWorkspaceTtlSeconds":3600,"allowedPorts":[8000]}'
# It can do nothing but enroll short-lived workspaces of its user; revoke it with
# UserService/RevokeEnrollmentToken.
curl -fsSL https://ws.example.com/-/agent/install.sh | sh && WARREN_SERVER=https://ws.example.com ./warren-agent ci --port 8000 -- code-server --bind-addr 127.0.0.1:8000 --auth none .
