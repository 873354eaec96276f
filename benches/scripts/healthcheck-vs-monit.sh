#!/usr/bin/env bash
# healthreport vs Monit: twenty checks against local targets (real nginx, PHP-FPM, MariaDB, an
# nginx TLS server with a private CA, the local disks, memory, processes, a status file), run
# one-shot by both tools in the same run, alternating; then the same with one target hung
# (accepts, never answers) under a 1 s timeout. Prints each run's wall time and both tools'
# verdicts per check.
#
#   bash benches/scripts/healthcheck-vs-monit.sh [RUNS]          (default 10; needs root for apt)
#
# Needs: nginx-light php-fpm mariadb-server monit openssl python3 (installed when missing).
# healthreport is built with `cargo build --release -p hostguard-examples --bin healthreport`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
runs=${1:-10}
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/healthreport

apt_packages=()
service_starters=()
pids=()
# shellcheck source=/dev/null
source scripts/services/healthcheck.sh
missing=()
for p in "${apt_packages[@]}" openssl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --release -q -p hostguard-examples --bin healthreport

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${HOSTGUARD_HEALTH_DIR:-}" ]; then rm -rf "$HOSTGUARD_HEALTH_DIR"; fi
}
trap cleanup EXIT
start_healthcheck_services
dir=$HOSTGUARD_HEALTH_DIR
ngx_port=${HOSTGUARD_NGINX_URL#http://127.0.0.1:}
ngx_port=${ngx_port%/}
db_port=${HOSTGUARD_MARIADB_ADDR#127.0.0.1:}

# A private CA and a leaf for localhost valid 20 days, served by a second nginx over TLS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
  -days 30 -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/leaf.key" -out "$dir/leaf.csr" \
  -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/leaf.ext"
openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -out "$dir/leaf.pem" \
  -days 20 -extfile "$dir/leaf.ext" 2>/dev/null
tls_port=$(healthcheck_free_port)
healthcheck_nginx_conf "$dir" nginx-tls "
    listen 127.0.0.1:$tls_port ssl;
    ssl_certificate $dir/leaf.pem;
    ssl_certificate_key $dir/leaf.key;
    root $dir/www;"
nginx -c "$dir/nginx-tls.conf" -e "$dir/nginx-tls-error.log" >/dev/null 2>&1 &
pids+=($!)
healthcheck_wait "nginx (TLS)" python3 -c "import socket; socket.create_connection(('127.0.0.1', $tls_port))"

# A hung target: accepts connections and never answers.
hung_port=$(healthcheck_free_port)
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $hung_port)); s.listen(64); held = []
while True:
    c, _ = s.accept(); held.append(c)
" &
pids+=($!)
echo '{"last_success": "now"}' >"$dir/backup-status.json"

# name | healthreport check (TOML body) | monit service
checks=(
  "tcp-nginx|kind = \"tcp\"\naddress = \"127.0.0.1:$ngx_port\"|check host tcp-nginx with address 127.0.0.1\n  if failed port $ngx_port with timeout TIMEOUT seconds then alert"
  "tcp-mariadb|kind = \"tcp\"\naddress = \"127.0.0.1:$db_port\"|check host tcp-mariadb with address 127.0.0.1\n  if failed port $db_port with timeout TIMEOUT seconds then alert"
  "http-page|kind = \"http\"\nurl = \"http://127.0.0.1:$ngx_port/\"\nbody_contains = \"hostguard health page\"|check host http-page with address 127.0.0.1\n  if failed port $ngx_port protocol http request \"/\" content = \"hostguard health page\" with timeout TIMEOUT seconds then alert"
  "http-status-url|kind = \"http\"\nurl = \"http://127.0.0.1:$ngx_port/nginx-status\"|check host http-status-url with address 127.0.0.1\n  if failed port $ngx_port protocol http request \"/nginx-status\" with timeout TIMEOUT seconds then alert"
  "nginx-stub-status|kind = \"nginx\"\nurl = \"http://127.0.0.1:$ngx_port/nginx-status\"|check host nginx-stub-status with address 127.0.0.1\n  if failed port $ngx_port protocol http request \"/nginx-status\" content = \"Active connections\" with timeout TIMEOUT seconds then alert"
  "php-fpm-status|kind = \"php_fpm\"\nurl = \"http://127.0.0.1:$ngx_port/fpm-status\"\ncrit = \"10\"|check host php-fpm-status with address 127.0.0.1\n  if failed port $ngx_port protocol http request \"/fpm-status\" content = \"pool:\" with timeout TIMEOUT seconds then alert"
  "mysql-greeting|kind = \"mysql\"\naddress = \"127.0.0.1:$db_port\"|check host mysql-greeting with address 127.0.0.1\n  if failed port $db_port protocol mysql with timeout TIMEOUT seconds then alert"
  "mysql-ping|kind = \"mysql\"\naddress = \"127.0.0.1:$db_port\"\nuser = \"$HOSTGUARD_MARIADB_USER\"\npassword = \"$HOSTGUARD_MARIADB_PASSWORD\"|check host mysql-ping with address 127.0.0.1\n  if failed port $db_port protocol mysql username \"$HOSTGUARD_MARIADB_USER\" password \"$HOSTGUARD_MARIADB_PASSWORD\" with timeout TIMEOUT seconds then alert"
  "disk-root|kind = \"disk\"\npath = \"/\"\ncrit = \"5:\"|check filesystem disk-root with path /\n  if space usage > 95% then alert"
  "inodes-root|kind = \"disk\"\npath = \"/\"\nmetric = \"inodes_free_percent\"\ncrit = \"5:\"|check filesystem inodes-root with path /\n  if inode usage > 95% then alert"
  "memory|kind = \"memory\"\ncrit = \"5:\"|check system \$HOST\n  if memory usage > 95% then alert\n  if swap usage > 50% then alert\n  if loadavg (5min) per core > 4 then alert"
  "swap|kind = \"swap\"\ncrit = \"50:\"|"
  "load|kind = \"load\"\ncrit = \"4\"|"
  "nginx-pidfile|kind = \"process\"\npidfile = \"$dir/nginx.pid\"|check process nginx-pidfile with pidfile $dir/nginx.pid"
  "mariadbd-process|kind = \"process\"\nprocess = \"mariadbd\"|check process mariadbd-process matching \"mariadbd\""
  "php-fpm-process|kind = \"process\"\nprocess = \"php-fpm8.2\"|check process php-fpm-process matching \"php-fpm\""
  "backup-status|kind = \"file\"\npath = \"$dir/backup-status.json\"\nwarn = \"93600\"|check file backup-status with path $dir/backup-status.json\n  if timestamp > 26 hours then alert"
  "tls-cert|kind = \"tls\"\naddress = \"127.0.0.1:$tls_port\"\nserver_name = \"localhost\"\nca_file = \"$dir/ca.pem\"\nwarn = \"14:\"\ncrit = \"3:\"|check host tls-cert with address 127.0.0.1\n  if failed port $tls_port protocol https and certificate valid > 14 days with timeout TIMEOUT seconds then alert"
  "https-page|kind = \"http\"\nurl = \"https://localhost:$tls_port/\"\nca_file = \"$dir/ca.pem\"\nbody_contains = \"hostguard\"|check host https-page with address localhost\n  if failed port $tls_port protocol https request \"/\" content = \"hostguard\" with timeout TIMEOUT seconds then alert"
  "tcp-tls|kind = \"tcp\"\naddress = \"127.0.0.1:$tls_port\"|check host tcp-tls with address 127.0.0.1\n  if failed port $tls_port with timeout TIMEOUT seconds then alert"
)

# write_configs SCENARIO TIMEOUT: SCENARIO "hung" points http-page at the hung server.
write_configs() {
  local scenario=$1 timeout=$2 entry name ours theirs
  local toml="$dir/bench-$scenario.toml" rc="$dir/monitrc-$scenario"
  printf 'host = "bench"\ntimeout = "%ss"\n' "$timeout" >"$toml"
  printf 'set daemon 30\nset logfile %s\nset idfile %s\nset statefile %s\nset pidfile %s\n' \
    "$dir/monit-$scenario.log" "$dir/monit.id" "$dir/monit-$scenario.state" "$dir/monit-$scenario.pid" >"$rc"
  for entry in "${checks[@]}"; do
    name=${entry%%|*}; ours=${entry#*|}; theirs=${ours#*|}; ours=${ours%%|*}
    if [ "$scenario" = hung ] && [ "$name" = http-page ]; then
      ours="kind = \"http\"\nurl = \"http://127.0.0.1:$hung_port/\""
      theirs="check host http-page with address 127.0.0.1\n  if failed port $hung_port protocol http with timeout TIMEOUT seconds then alert"
    fi
    printf '\n[[check]]\nname = "%s"\n%b\n' "$name" "$ours" >>"$toml"
    [ -n "$theirs" ] && printf '%b\n' "${theirs//TIMEOUT/$timeout}" >>"$rc"
  done
  chmod 600 "$rc"
}

now_ns() { date +%s%N; }

echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# healthreport $(git rev-parse --short HEAD), $(monit -V | head -n1)"
for scenario in answering hung; do
  write_configs "$scenario" 1
  toml="$dir/bench-$scenario.toml"; rc="$dir/monitrc-$scenario"; log="$dir/monit-$scenario.log"
  echo
  echo "## $scenario (20 checks, timeout 1 s)"
  echo "run  healthreport_wall_ms  report_ms  monit_wall_ms"
  for i in $(seq 1 "$runs"); do
    t0=$(now_ns)
    "$bin" -c "$toml" --format json >"$dir/ours-$scenario.json" || true
    t1=$(now_ns)
    rm -f "$log" "$dir/monit-$scenario.state"
    monit -c "$rc" validate >/dev/null 2>&1 || true
    t2=$(now_ns)
    report_ms=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['duration']*1000,1))" "$dir/ours-$scenario.json")
    printf '%3d  %20.1f  %9s  %13.1f\n' "$i" "$(( (t1 - t0) / 1000 ))e-3" "$report_ms" "$(( (t2 - t1) / 1000 ))e-3"
  done
  echo "verdicts (last run): check  healthreport  monit"
  python3 - "$dir/ours-$scenario.json" "$log" <<'PY'
import json, os, re, sys
report = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read() if os.path.exists(sys.argv[2]) else ""
# Monit logs each failing service once per cycle as `error : 'NAME' ...`.
failed = set(re.findall(r"error\s*:\s*'([^']+)'", log))
names = {c["name"] for c in report["checks"]}
# memory, swap and load are one `check system $HOST` service in Monit.
system = "FAIL" if failed - names else "ok"
for c in report["checks"]:
    name = c["name"]
    if name in ("memory", "swap", "load"):
        monit = system + " (check system)"
    else:
        monit = "FAIL" if name in failed else "ok"
    print(f"  {name:18} {c['status']:9} {c['reason']:14} monit: {monit}")
PY
  grep -E "error|failed" "$log" | sed 's/^/  monit log: /' | head -n 5 || true
done
