#!/usr/bin/env bash
# The whole test suite: installs what the tests need when missing, starts services on loopback,
# runs `cargo test --workspace`, and stops what it started.
#
#   bash scripts/test.sh [extra cargo test args]
#
# Needs root (or passwordless sudo) for apt-get, network namespaces and nftables.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# --- Debian packages -------------------------------------------------------------------------
# age: interop tests; fail2ban: stock filters and sample logs; nftables/iproute2: firewall tests;
# systemd: journald for the journal source; python3-venv: the virtualenv below; curl: S3 bucket setup.
# gcc and make build the C parts of dependencies (ring, tikv-jemalloc-sys).
apt_packages=(age fail2ban nftables iproute2 systemd python3-venv curl gcc make)
py_packages=(pyrage "moto[s3]" flask flask-cors)
py_imports=(pyrage moto flask flask_cors)
# Each file in scripts/services/ adds what one crate's tests need: it appends to apt_packages,
# py_packages and py_imports, and names a function in service_starters that starts its service on
# loopback (adding its pid to `pids`) and exports where the tests find it.
service_starters=()
for service in scripts/services/*.sh; do
  [ -e "$service" ] || continue
  # shellcheck source=/dev/null
  source "$service"
done
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Python packages in a virtualenv ---------------------------------------------------------
# pyrage: passphrase interop for age; moto: a real S3-compatible server for object_store tests.
venv=${HOSTGUARD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hostguard-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import $(IFS=,; echo "${py_imports[*]}")" 2>/dev/null; then
  echo "test.sh: installing Python packages into $venv: ${py_packages[*]}"
  "$venv/bin/pip" install -q "${py_packages[@]}"
fi
export HOSTGUARD_PYTHON="$venv/bin/python"

# --- Services on loopback --------------------------------------------------------------------
pids=()
# Directories that services made for one run (their data, sockets, logs); removed on exit.
cleanup_dirs=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for dir in "${cleanup_dirs[@]}"; do rm -rf -- "$dir"; done
}
trap cleanup EXIT

free_port() {
  "$HOSTGUARD_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

s3_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"${TMPDIR:-/tmp}/hostguard-moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if "$HOSTGUARD_PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$s3_port/')" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
export HOSTGUARD_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

# fail2ban's stock filters and annotated sample logs, as Debian ships them.
export FAIL2BAN_FILTER_DIR=${FAIL2BAN_FILTER_DIR:-/etc/fail2ban/filter.d}
export FAIL2BAN_SAMPLE_LOGS=${FAIL2BAN_SAMPLE_LOGS:-/usr/lib/python3/dist-packages/fail2ban/tests/files/logs}

for starter in "${service_starters[@]}"; do
  "$starter"
done

# Tests that skip record themselves here (test_support::record_skip); cargo hides their output.
skip_log=$(mktemp "${TMPDIR:-/tmp}/hostguard-skips.XXXXXX")
export HOSTGUARD_SKIP_LOG="$skip_log"
status=0
cargo test --workspace "$@" || status=$?
echo
if [ -s "$skip_log" ]; then
  echo "test.sh: $(sort -u "$skip_log" | wc -l) test(s) skipped:"
  sort -u "$skip_log" | sed 's/^/  /'
else
  echo "test.sh: no test skipped"
fi
rm -f "$skip_log"
exit "$status"
