#!/usr/bin/env python3
"""Write a deterministic web-hosting-like tree: many sites sharing CMS and plugin code, their
uploads, MySQL dumps and logs (the second tree of issue 12's speed figures, beside the Rust
toolchain).

Usage: gen-webhost-tree.py DST [SITES] [SEED]

For SITES sites (default 30) under DST/home/siteNN/:
  public_html/         one of three versions of a CMS core (1,200 PHP/JS/CSS files of 0.3-40 KB,
                       each version differing from the previous in 15 % of its files), so most
                       of it deduplicates across sites, as on a real shared host;
  public_html/wp-content/plugins/
                       5 of 20 plugins (60-120 files each);
  public_html/wp-content/uploads/YYYY/MM/
                       80-160 "images" of 8 KB-1.5 MB: a JPEG/PNG header then pseudo-random bytes,
                       incompressible like real photos;
  backups/db.sql       a MySQL dump of 1-20 MB (CREATE TABLE and extended INSERTs of posts,
                       options and users: compressible text);
  logs/access.log      1-6 MB of nginx combined log lines.
About 60,000 files and 1.1 GB for 30 sites. The same SITES and SEED always give the same tree,
byte for byte (mtimes fixed at 2026-01-01). DST must not exist.
"""
import os
import random
import sys

MTIME = 1767225600  # 2026-01-01T00:00:00Z
WORDS = ("the of and to in is for on with as by at from post page user site theme plugin "
         "option value content title excerpt status publish draft comment author meta key "
         "category tag menu widget image gallery product order price cart checkout customer "
         "shipping payment session cache query result array string return function public "
         "private static class extends implements namespace use new null true false").split()
PHP_SNIPPETS = [
    "if ( ! defined( 'ABSPATH' ) ) {{\n\texit;\n}}\n",
    "function {f}_{g}( ${a}, ${b} = null ) {{\n\tglobal $wpdb;\n\t$result = $wpdb->get_results( "
    "$wpdb->prepare( \"SELECT * FROM {{$wpdb->prefix}}{a} WHERE {b} = %s\", ${b} ) );\n\t"
    "return apply_filters( '{f}_{g}', $result, ${a} );\n}}\n",
    "class {F}_{G} extends {F}_Base {{\n\tprotected ${a} = array();\n\tpublic function "
    "get_{b}() {{\n\t\treturn $this->{a}['{b}'] ?? '{c}';\n\t}}\n}}\n",
    "add_action( '{f}_{g}', function() {{\n\twp_enqueue_script( '{a}-{b}', plugins_url( "
    "'js/{a}.js', __FILE__ ), array( 'jquery' ), '{n}', true );\n}} );\n",
    "/**\n * {c} {a} {b} {f} {g}.\n *\n * @param string ${a} The {b}.\n * @return array\n */\n",
]
JS_SNIPPETS = [
    "(function($){{'use strict';$(document).on('click','.{a}-{b}',function(e){{e.preventDefault();"
    "var t=$(this).data('{f}');$.post(ajaxurl,{{action:'{g}',id:t}},function(r){{$('#{a}').html(r)"
    "}})}})}})(jQuery);\n",
    "export function {f}{G}({a}, {b}) {{\n  const {c} = {a}.filter((x) => x.{b} !== {n});\n"
    "  return {c}.map((x) => ({{ ...x, {g}: true }}));\n}}\n",
]
CSS_SNIPPETS = [
    ".{a}-{b} {{ margin: {n}px 0; padding: 0 {m}px; color: #{h}; }}\n",
    "@media (max-width: {n}px) {{ .{f} .{g} {{ display: none; }} }}\n",
]


def words(rng, n):
    return " ".join(rng.choices(WORDS, k=n))


def fill(rng, template):
    a, b, c, f, g = rng.choices(WORDS, k=5)
    return template.format(a=a, b=b, c=c, f=f, g=g, F=f.capitalize(), G=g.capitalize(),
                           n=rng.randint(1, 2000), m=rng.randint(0, 64),
                           h=f"{rng.getrandbits(24):06x}")


def source_file(rng, ext, size):
    snippets = {"php": PHP_SNIPPETS, "js": JS_SNIPPETS, "css": CSS_SNIPPETS}[ext]
    parts = ["<?php\n" if ext == "php" else f"/* {words(rng, 6)} */\n"]
    length = len(parts[0])
    while length < size:
        part = fill(rng, rng.choice(snippets))
        parts.append(part)
        length += len(part)
    return "".join(parts).encode()


def make_core(rng, count):
    """A CMS core: {relative path: bytes}."""
    dirs = ["", "wp-admin", "wp-admin/includes", "wp-admin/css", "wp-admin/js", "wp-includes",
            "wp-includes/js", "wp-includes/css", "wp-includes/rest-api", "wp-includes/blocks"]
    files = {}
    for i in range(count):
        ext = rng.choices(["php", "js", "css"], weights=[6, 3, 1])[0]
        d = rng.choice(dirs)
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i}.{ext}"
        size = int(min(40_000, max(300, rng.lognormvariate(8.3, 1.0))))
        files[os.path.join(d, name)] = source_file(rng, ext, size)
    return files


def next_version(rng, core, fraction=0.15):
    new = dict(core)
    for path in rng.sample(sorted(core), int(len(core) * fraction)):
        ext = path.rsplit(".", 1)[1]
        data = bytearray(core[path])
        at = rng.randrange(len(data))
        data[at:at] = source_file(rng, ext, rng.randint(50, 2000))
        new[path] = bytes(data)
    return new


def image(rng, size):
    header = rng.choice([b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
                         b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
    return header + rng.randbytes(size - len(header))


def sql_dump(rng, size):
    out = [b"-- MySQL dump 10.13  Distrib 8.0.36\n-- Host: localhost    Database: site\n"
           b"SET NAMES utf8mb4;\n"]
    length = len(out[0])
    table = 0
    while length < size:
        table += 1
        name = f"wp_{rng.choice(WORDS)}_{table}"
        head = (f"\nDROP TABLE IF EXISTS `{name}`;\nCREATE TABLE `{name}` (\n  `ID` bigint(20) "
                f"unsigned NOT NULL AUTO_INCREMENT,\n  `post_title` text NOT NULL,\n  `post_content`"
                f" longtext NOT NULL,\n  `post_status` varchar(20) NOT NULL DEFAULT 'publish',\n"
                f"  PRIMARY KEY (`ID`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
                f"INSERT INTO `{name}` VALUES ").encode()
        rows = []
        for row in range(rng.randint(200, 2000)):
            rows.append(f"({row + 1},'{words(rng, rng.randint(2, 8))}','{words(rng, rng.randint(10, 120))}',"
                        f"'{rng.choice(('publish', 'draft', 'inherit'))}')")
        body = head + ",".join(rows).encode() + b";\n"
        out.append(body)
        length += len(body)
    return b"".join(out)


def access_log(rng, size):
    lines = []
    length = 0
    paths = ["/", "/wp-login.php", "/xmlrpc.php", "/wp-admin/admin-ajax.php", "/feed/",
             "/wp-content/uploads/2025/03/photo.jpg", "/shop/cart/", "/?p=", "/wp-json/wp/v2/posts"]
    agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0 Safari/537.36", "Mozilla/5.0 (compatible; Googlebot/2.1)",
              "curl/7.88.1", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X)"]
    second = 0
    while length < size:
        second += rng.randint(0, 3)
        ip = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        line = (f'{ip} - - [{1 + second // 86400 % 28:02}/Dec/2025:{second // 3600 % 24:02}:'
                f'{second // 60 % 60:02}:{second % 60:02} +0000] "GET {rng.choice(paths)}'
                f'{rng.randint(1, 999) if rng.random() < 0.3 else ""} HTTP/1.1" '
                f'{rng.choice((200, 200, 200, 301, 404, 302))} {rng.randint(200, 90000)} "-" '
                f'"{rng.choice(agents)}"\n')
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (MTIME, MTIME))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    dst = sys.argv[1]
    sites = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 12)
    if os.path.exists(dst):
        sys.exit(f"{dst} exists")
    cores = [make_core(rng, 1200)]
    for _ in range(2):
        cores.append(next_version(rng, cores[-1]))
    plugins = []
    for p in range(20):
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{p}"
        files = {}
        for i in range(rng.randint(60, 120)):
            ext = rng.choices(["php", "js", "css"], weights=[5, 3, 2])[0]
            size = int(min(30_000, max(200, rng.lognormvariate(8.0, 1.0))))
            files[f"{name}/{rng.choice(('', 'includes/', 'assets/'))}{rng.choice(WORDS)}-{i}.{ext}"] = \
                source_file(rng, ext, size)
        plugins.append(files)
    total_files = total_bytes = 0
    for s in range(sites):
        home = os.path.join(dst, "home", f"site{s:02}")
        content = {}
        for path, data in cores[rng.choices(range(3), weights=[2, 3, 5])[0]].items():
            content[os.path.join("public_html", path)] = data
        for plugin in rng.sample(plugins, 5):
            for path, data in plugin.items():
                content[os.path.join("public_html/wp-content/plugins", path)] = data
        content["public_html/wp-config.php"] = source_file(rng, "php", 3000)
        for i in range(rng.randint(80, 160)):
            size = int(min(1_500_000, max(8_000, rng.lognormvariate(11.3, 1.0))))
            ext = rng.choice(("jpg", "jpg", "png"))
            content[f"public_html/wp-content/uploads/{rng.randint(2019, 2025)}/"
                    f"{rng.randint(1, 12):02}/{rng.choice(WORDS)}-{i}.{ext}"] = image(rng, size)
        content["backups/db.sql"] = sql_dump(rng, rng.randint(1_000_000, 20_000_000))
        content["logs/access.log"] = access_log(rng, rng.randint(1_000_000, 6_000_000))
        for path, data in sorted(content.items()):
            write(os.path.join(home, path), data)
            total_files += 1
            total_bytes += len(data)
    for root, dirs, _ in os.walk(dst, topdown=False):
        for d in dirs:
            os.utime(os.path.join(root, d), (MTIME, MTIME))
    os.utime(dst, (MTIME, MTIME))
    print(f"{total_files} files, {total_bytes / 2**20:.0f} MiB in {dst}")


if __name__ == "__main__":
    main()
