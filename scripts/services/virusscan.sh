# virusscan: a real clamd (Debian's clamav-daemon) on loopback TCP and a unix socket, with its own
# config in a temporary directory and ONLY the signature database written here: one `.ndb` body
# signature for the EICAR test string (clamd reports it as `Hostguard.Test.EICAR.UNOFFICIAL`).
# No freshclam, no download (this clamd never reads /var/lib/clamav; the clamav-freshclam
# package that clamav-daemon pulls in is not started here). StreamMaxLength and MaxFileSize are
# 1 MiB so the size limits are testable; AlertExceedsMax reports files over them.
#
# Exports HOSTGUARD_CLAMD_SOCKET (unix socket path), HOSTGUARD_CLAMD_TCP (127.0.0.1:PORT) and
# HOSTGUARD_CLAMD_STREAM_MAX (the limit in bytes). Sourced by scripts/test.sh; also runnable on its
# own for benchmarks: `source scripts/services/virusscan.sh; start_clamd` (stop it with
# `kill "${pids[@]}"`).
apt_packages+=(clamav-daemon clamdscan)
service_starters+=(start_clamd)

# The EICAR test string, assembled from halves so this script is not itself a test file.
virusscan_eicar_hex() {
  printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-' 'STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' |
    od -An -v -tx1 | tr -d ' \n'
}

start_clamd() {
  local dir port
  dir=$(mktemp -d "${TMPDIR:-/tmp}/hostguard-clamd.XXXXXX")
  cleanup_dirs+=("$dir")
  chmod 755 "$dir"
  mkdir -p "$dir/db"
  printf 'Hostguard.Test.EICAR:0:*:%s\n' "$(virusscan_eicar_hex)" >"$dir/db/hostguard-test.ndb"
  if declare -F free_port >/dev/null; then
    port=$(free_port)
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  fi
  cat >"$dir/clamd.conf" <<CONF
Foreground yes
LocalSocket $dir/clamd.sock
LocalSocketMode 666
TCPSocket $port
TCPAddr 127.0.0.1
DatabaseDirectory $dir/db
LogFile $dir/clamd.log
LogTime yes
PidFile $dir/clamd.pid
StreamMaxLength 1M
MaxFileSize 1M
MaxScanSize 4M
AlertExceedsMax yes
MaxThreads ${HOSTGUARD_CLAMD_THREADS:-4}
MaxQueue 200
IdleTimeout 30
CommandReadTimeout 10
SelfCheck 0
Bytecode no
CONF
  if [ "$(id -u)" -eq 0 ]; then echo "User root" >>"$dir/clamd.conf"; fi
  # clamd makes (and removes) a directory in its TemporaryDirectory for every file it scans;
  # benchmarks can put it on a tmpfs (default: clamd's own, /tmp).
  if [ -n "${HOSTGUARD_CLAMD_TMPDIR:-}" ]; then echo "TemporaryDirectory $HOSTGUARD_CLAMD_TMPDIR" >>"$dir/clamd.conf"; fi
  clamd --config-file="$dir/clamd.conf" >"$dir/stdout.log" 2>&1 &
  pids+=($!)
  local i ready=no
  for i in $(seq 1 300); do
    if [ -S "$dir/clamd.sock" ] && clamdscan --config-file="$dir/clamd.conf" --ping 1 >/dev/null 2>&1; then
      ready=yes
      break
    fi
    sleep 0.1
  done
  if [ "$ready" != yes ]; then
    echo "virusscan.sh: clamd did not answer within 30 s; its log:" >&2
    tail -20 "$dir/clamd.log" "$dir/stdout.log" >&2 || true
    return 1
  fi
  export HOSTGUARD_CLAMD_DIR="$dir"
  export HOSTGUARD_CLAMD_CONF="$dir/clamd.conf"
  export HOSTGUARD_CLAMD_SOCKET="$dir/clamd.sock"
  export HOSTGUARD_CLAMD_TCP="127.0.0.1:$port"
  export HOSTGUARD_CLAMD_STREAM_MAX=$((1024 * 1024))
  echo "virusscan.sh: clamd on $HOSTGUARD_CLAMD_SOCKET and $HOSTGUARD_CLAMD_TCP (config $dir/clamd.conf)"
}
