# healthcheck: real nginx (stub_status), PHP-FPM (status page through nginx) and MariaDB (its own
# datadir, 127.0.0.1 only, a test user with mysql_native_password), all under one temporary
# directory; plus promtool, chromium and monit for the report and benchmark tests.
#
# Exports HOSTGUARD_NGINX_STATUS_URL, HOSTGUARD_PHPFPM_STATUS_URL, HOSTGUARD_NGINX_URL (a page
# with known text), HOSTGUARD_MARIADB_ADDR (127.0.0.1:PORT), HOSTGUARD_MARIADB_USER,
# HOSTGUARD_MARIADB_PASSWORD, HOSTGUARD_NGINX_PIDFILE. Sourced by scripts/test.sh; also runnable on
# its own for the benchmark: `source scripts/services/healthcheck.sh; start_healthcheck_services`
# (stop with `kill "${pids[@]}"`).
# python3-fusepy: a FUSE file system whose statfs hangs, for the disk check's hung-mount test.
apt_packages+=(nginx-light php-fpm mariadb-server prometheus chromium monit python3-fusepy)
service_starters+=(start_healthcheck_services)

healthcheck_free_port() {
  if declare -F free_port >/dev/null; then
    free_port
  else
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  fi
}

healthcheck_wait() { # healthcheck_wait WHAT COMMAND...
  local what=$1 i
  shift
  for i in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "healthcheck.sh: $what did not start" >&2
  return 1
}

# healthcheck_nginx_conf DIR NAME SERVER_BODY: writes DIR/NAME.conf, an nginx in the foreground
# with its pid, logs and temporary files under DIR and one server block.
healthcheck_nginx_conf() {
  local dir=$1 name=$2 server=$3
  mkdir -p "$dir/$name-tmp"
  cat >"$dir/$name.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/$name.pid;
error_log $dir/$name-error.log;
$( [ "$(id -un)" = root ] && echo "user root;" )
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/$name-tmp/body;
  proxy_temp_path $dir/$name-tmp/proxy;
  fastcgi_temp_path $dir/$name-tmp/fastcgi;
  uwsgi_temp_path $dir/$name-tmp/uwsgi;
  scgi_temp_path $dir/$name-tmp/scgi;
  server {$server
  }
}
CONF
}

start_healthcheck_services() {
  local dir nginx_port db_port fpm_bin user
  dir=$(mktemp -d "${TMPDIR:-/tmp}/hostguard-health.XXXXXX")
  cleanup_dirs+=("$dir")
  chmod 755 "$dir"
  user=$(id -un)
  nginx_port=$(healthcheck_free_port)
  db_port=$(healthcheck_free_port)

  # PHP-FPM: one pool on a unix socket in $dir, status page at /fpm-status.
  fpm_bin=$(command -v php-fpm8.2 || ls /usr/sbin/php-fpm* 2>/dev/null | head -n1)
  cat >"$dir/php-fpm.conf" <<CONF
[global]
pid = $dir/php-fpm.pid
error_log = $dir/php-fpm.log
daemonize = no
[hostguard]
user = $user
listen = $dir/php-fpm.sock
listen.mode = 0666
pm = static
pm.max_children = 2
pm.status_path = /fpm-status
CONF
  "$fpm_bin" -R -y "$dir/php-fpm.conf" >"$dir/php-fpm.out" 2>&1 &
  pids+=($!)

  # nginx: 127.0.0.1 only, stub_status, the FPM status page, a page with known text.
  mkdir -p "$dir/www"
  echo "hostguard health page" >"$dir/www/index.html"
  healthcheck_nginx_conf "$dir" nginx "
    listen 127.0.0.1:$nginx_port;
    root $dir/www;
    location = /nginx-status { stub_status; }
    location = /fpm-status {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_NAME /fpm-status;
      fastcgi_param SCRIPT_FILENAME /fpm-status;
      fastcgi_pass unix:$dir/php-fpm.sock;
    }"
  nginx -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >"$dir/nginx.out" 2>&1 &
  pids+=($!)

  # MariaDB: a fresh datadir, TCP on 127.0.0.1 only, and a socket for setting up the test user.
  mariadb-install-db --no-defaults --datadir="$dir/db" --user="$user" --auth-root-authentication-method=socket \
    --skip-test-db --innodb-log-file-size=4M >"$dir/mariadb-install.log" 2>&1
  mariadbd --no-defaults --datadir="$dir/db" --socket="$dir/mysql.sock" --port="$db_port" \
    --bind-address=127.0.0.1 --user="$user" --pid-file="$dir/mariadb.pid" --log-error="$dir/mariadb.err" \
    --skip-name-resolve --innodb-buffer-pool-size=16M --innodb-log-file-size=4M --performance-schema=OFF >"$dir/mariadb.out" 2>&1 &
  pids+=($!)

  healthcheck_wait nginx python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$nginx_port/nginx-status')"
  healthcheck_wait php-fpm python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$nginx_port/fpm-status')"
  healthcheck_wait mariadb mariadb --no-defaults --socket="$dir/mysql.sock" -u root -e "SELECT 1"
  mariadb --no-defaults --socket="$dir/mysql.sock" -u root -e \
    "CREATE USER 'hgtest'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('hg-test-pw'); FLUSH PRIVILEGES;"

  export HOSTGUARD_HEALTH_DIR="$dir"
  export HOSTGUARD_NGINX_URL="http://127.0.0.1:$nginx_port/"
  export HOSTGUARD_NGINX_STATUS_URL="http://127.0.0.1:$nginx_port/nginx-status"
  export HOSTGUARD_PHPFPM_STATUS_URL="http://127.0.0.1:$nginx_port/fpm-status"
  export HOSTGUARD_NGINX_PIDFILE="$dir/nginx.pid"
  export HOSTGUARD_MARIADB_ADDR="127.0.0.1:$db_port"
  export HOSTGUARD_MARIADB_USER=hgtest
  export HOSTGUARD_MARIADB_PASSWORD=hg-test-pw
}
