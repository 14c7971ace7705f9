# Sourced by scripts/demo and scripts/test: `step NAME COMMAND...` runs one set-up step and prints its name and
# elapsed time, so a slow set-up shows where the minutes went; `steps_total` prints the sum.
SETUP_STARTED=$(date +%s)

step() {
  local name=$1 started rc=0
  shift
  started=$(date +%s)
  echo "[setup] == $name"
  "$@" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "[setup] == $name: FAILED (exit $rc) after $(($(date +%s) - started)) s" >&2
    exit "$rc"
  fi
  echo "[setup] == $name: done in $(($(date +%s) - started)) s"
}

steps_total() {
  echo "[setup] set-up finished in $(($(date +%s) - SETUP_STARTED)) s"
}
