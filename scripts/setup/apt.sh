# Sourced by the set-up scripts: `apt_install "PROBE PACKAGE... [--no-install-recommends]" ...` installs each
# entry whose probe command is missing (apt-get update at most once per script).
apt_install() {
  local entry probe rest updated=0
  for entry in "$@"; do
    read -r probe rest <<<"$entry"
    command -v "$probe" >/dev/null 2>&1 && continue
    [ "$updated" = 1 ] || { apt-get update -qq; updated=1; }
    echo "[setup] apt-get install $rest"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $rest >/dev/null
  done
}
