#!/bin/sh
# The one test command (README, .ci/run): installs what the tests need when it is missing
# (Debian packages via apt-get, npm packages from the lock file), builds, and runs every test.
set -eu
cd "$(dirname "$0")/.."

missing=""
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || missing="$missing $2"; }
need redis-server redis-server
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need scp openssh-client
need sftp openssh-client
need ssh-keyscan openssh-client
need sshpass sshpass
need script bsdutils
need useradd passwd
need curl curl
need ip iproute2
need xz xz-utils
need strip binutils
need wget wget
need sha256sum coreutils
need python3 python3
need nft nftables
need /usr/bin/chromium chromium
if [ -n "$missing" ]; then
  echo "test.sh: installing Debian packages:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  $SUDO apt-get install -y --no-install-recommends $missing || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends $missing; }
fi

npm ci --no-audit --no-fund
npm test
