#!/usr/bin/env python3
"""Deterministic nginx access and error logs of an HTTP flood, for logban's benchmarks.

Usage: gen-nginx-logs.py LINES OUTDIR [SEED]

Writes OUTDIR/access.log and OUTDIR/error.log, LINES lines each (combined log format and
nginx's error-log format). The same LINES and SEED always give the same bytes.

access.log: ~78% normal traffic (browsers, 200/304/301, assets and pages), ~12% scanners
(404s on wp-login.php, phpMyAdmin, webmail, cgi-bin, .env, ...), ~4% bad bots (user agents from
fail2ban's apache-badbots list), ~6% a limit_req flood (a few addresses hammering /login, most
answered 503).
error.log: ~55% limit_req rejections ("limiting requests, excess: ... by zone"), ~15% delayed
requests (warn, not a failure), ~10% HTTP basic-auth failures (user not found, password
mismatch), ~10% scanners' "open() ... failed (2: No such file or directory)", ~10% other errors
(upstream timeouts, client closed connection, SSL handshakes).
Timestamps advance from 2026-03-01 00:00:00 UTC, a few lines per second.
"""
import os
import random
import sys
from datetime import datetime, timedelta

lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
outdir = sys.argv[2] if len(sys.argv) > 2 else "."
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)


def v4(first):
    return f"{rng.choice(first)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def v6():
    return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"


visitors = [v4([81, 86, 90, 109, 176, 188, 212]) for _ in range(5000)] + [v6() for _ in range(500)]
scanners = [v4([45, 61, 103, 141, 185, 193]) for _ in range(800)] + [v6() for _ in range(80)]
bots = [v4([5, 23, 46, 62]) for _ in range(200)]
flooders = [v4([91, 194, 198]) for _ in range(40)] + [v6() for _ in range(10)]
htusers = ["admin", "root", "test", "guest", "deploy", "user", "backup", "monitor"]

browsers = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.5.0",
]
badbot_agents = [
    "EmailSiphon", "EmailWolf 1.00", "ExtractorPro", "WebEMailExtrac", "Jorgee",
    "Mozilla/5.0 Jorgee", "autoemailspider", "ContactBot/0.2", "EmailCollector",
]
pages = ["/", "/index.php", "/about", "/contact", "/blog/", "/blog/post-%d", "/shop/item/%d",
         "/static/css/site.css", "/static/js/app.js", "/images/photo-%d.jpg", "/favicon.ico"]
probes = ["/wp-login.php", "/wp-admin.php", "/wp-signup.php", "/phpmyadmin/index.php",
          "/pma/", "/phpMyAdmin/scripts/setup.php", "/myadmin/", "/admin/pma/", "/webmail/",
          "/roundcube/", "/mail/", "/horde/", "/cgi-bin/test.cgi", "/mysqladmin/",
          "/.env", "/.git/config", "/xmlrpc.php", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"]
zones = ["login", "api", "perip"]
server = "shop.example.com"


def page():
    p = rng.choice(pages)
    return p % rng.randrange(1, 500) if "%d" in p else p


def access(t):
    k = rng.random()
    stamp = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
    if k < 0.78:
        ip, method, path = rng.choice(visitors), rng.choice(["GET"] * 9 + ["POST"]), page()
        status = rng.choice([200] * 12 + [304, 304, 301, 404])
        agent = rng.choice(browsers)
    elif k < 0.90:
        ip, method, path = rng.choice(scanners), rng.choice(["GET", "GET", "POST", "HEAD"]), rng.choice(probes)
        status, agent = 404, rng.choice(browsers[:3] + ["python-requests/2.31.0", "Go-http-client/1.1"])
    elif k < 0.94:
        ip, method, path = rng.choice(bots), "GET", page()
        status, agent = rng.choice([200, 200, 404]), rng.choice(badbot_agents)
    else:
        ip, method, path = rng.choice(flooders), "POST", "/login"
        status, agent = rng.choice([503] * 5 + [200, 401]), rng.choice(browsers)
    size = rng.randrange(0, 60000) if status == 200 else rng.randrange(150, 600)
    ref = rng.choice(['"-"', f'"https://{server}/"', f'"https://{server}/blog/"'])
    return f'{ip} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} {ref} "{agent}"'


def error(t):
    k = rng.random()
    stamp = t.strftime("%Y/%m/%d %H:%M:%S")
    pid = rng.randrange(1000, 4000)
    conn = rng.randrange(1, 9_999_999)
    head = f"{stamp} [%s] {pid}#{pid}: *{conn} "
    if k < 0.55:
        ip = rng.choice(flooders)
        excess = f"{rng.randrange(0, 50)}.{rng.randrange(1000):03d}"
        return (head % "error") + (
            f'limiting requests, excess: {excess} by zone "{rng.choice(zones)}", client: {ip}, '
            f'server: {server}, request: "POST /login HTTP/1.1", host: "{server}"')
    if k < 0.70:
        ip = rng.choice(flooders + visitors[:200])
        excess = f"{rng.randrange(0, 5)}.{rng.randrange(1000):03d}"
        return (head % "warn") + (
            f'delaying request, excess: {excess}, by zone "{rng.choice(zones)}", client: {ip}, '
            f'server: {server}, request: "GET {page()} HTTP/1.1", host: "{server}"')
    if k < 0.80:
        ip, user = rng.choice(scanners + visitors[:100]), rng.choice(htusers)
        what = rng.choice([f'user "{user}" was not found in "/etc/nginx/.htpasswd"', f'user "{user}": password mismatch'])
        ref = rng.choice(["", f', referrer: "https://{server}/admin/"'])
        return (head % "error") + (
            f'{what}, client: {ip}, server: {server}, request: "GET /admin/ HTTP/1.1", '
            f'host: "{server}"{ref}')
    if k < 0.90:
        ip, probe = rng.choice(scanners), rng.choice(probes)
        return (head % "error") + (
            f'open() "/var/www/shop{probe}" failed (2: No such file or directory), client: {ip}, '
            f'server: {server}, request: "{rng.choice(["GET", "POST", "HEAD"])} {probe} HTTP/1.1", host: "{server}"')
    ip = rng.choice(visitors)
    other = rng.choice([
        f'upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ip}, server: {server}, request: "GET {page()} HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock", host: "{server}"',
        f'client {ip} closed keepalive connection',
        f'SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking, client: {ip}, server: 0.0.0.0:443',
    ])
    return (head % rng.choice(["error", "info", "crit"])) + other


def write(name, make):
    t = datetime(2026, 3, 1, 0, 0, 0)
    buf = []
    with open(os.path.join(outdir, name), "w") as out:
        for _ in range(lines):
            t += timedelta(milliseconds=rng.randrange(0, 400))
            buf.append(make(t) + "\n")
            if len(buf) >= 10000:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))


os.makedirs(outdir, exist_ok=True)
write("access.log", access)
write("error.log", error)
