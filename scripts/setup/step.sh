# Sourced by scripts/demo and scripts/test: `step NAME COMMAND...` runs one set-up step and prints its name and
# elapsed time, so a slow set-up shows where the minutes went; `steps_total` prints the sum.
# `step_bg NAME COMMAND...` starts a step in the background (its output goes to a log, shown when it ends) and
# `wait_steps` waits for all of them: independent downloads and builds overlap on a fresh machine.
SETUP_STARTED=$(date +%s)
SETUP_LOGS=$(mktemp -d /tmp/m3lab-setup.XXXXXX)
BG_PIDS=()
BG_NAMES=()

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

step_bg() {
  local name=$1
  shift
  echo "[setup] == $name (in the background, log $SETUP_LOGS/${#BG_PIDS[@]}.log)"
  step "$name" "$@" >"$SETUP_LOGS/${#BG_PIDS[@]}.log" 2>&1 &
  BG_PIDS+=("$!")
  BG_NAMES+=("$name")
}

wait_steps() {
  local i failed=0
  echo "[setup] waiting for: $(IFS=,; echo "${BG_NAMES[*]}") (each one's output follows when it ends)"
  for i in "${!BG_PIDS[@]}"; do
    wait "${BG_PIDS[$i]}" || failed=1
    cat "$SETUP_LOGS/$i.log"
  done
  BG_PIDS=()
  BG_NAMES=()
  [ "$failed" = 0 ] || { echo "[setup] a background step failed (its log is above)" >&2; exit 1; }
}

steps_total() {
  echo "[setup] set-up finished in $(($(date +%s) - SETUP_STARTED)) s"
}
