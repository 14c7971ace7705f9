#!/usr/bin/env bash
# Docker engine and sandbox images. Idempotent: starts dockerd only when `docker info` fails, and
# `m3lab sandbox build` reuses images whose recipe hash is unchanged. Runs as root on a fresh CI machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

# setfacl lets the sandbox's uid write the workspace without chowning it (see sandboxes/workspace.py).
if ! command -v setfacl >/dev/null 2>&1; then
  echo "[setup] apt-get install acl"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq acl >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "[setup] error: dockerd not installed (scripts/setup/system.sh installs docker.io)" >&2
    exit 1
  fi
  echo "[setup] starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "[setup] error: dockerd did not answer within 60 s; last lines of /var/log/dockerd.log:" >&2
    tail -n 20 /var/log/dockerd.log >&2 || true
    exit 1
  fi
fi
echo "[setup] docker engine: $(docker version --format '{{.Server.Version}}')"

# Which images: "all" (tests) or one name (the main job needs only "default").
.venv/bin/m3lab sandbox build --image "${1:-all}"
