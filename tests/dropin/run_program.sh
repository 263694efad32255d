#!/usr/bin/env bash
# Real-program drop-in test: runs one scenario under glibc's malloc and again under
# `hakmem-run --json` (LD_PRELOAD=libhakmem.so, stats=json), and fails when
#   - the two runs' outputs differ (stdout and stderr, hakmem's JSON removed),
#   - either run exits non-zero, or the exit codes differ,
#   - hakmem served nothing (sum of pool.allocs + map.allocs over every process == 0),
#   - any process reported an error (errors.total > 0) or printed a "hakmem:" report/warning.
#
# Usage: run_program.sh <build-dir> <scenario> <workdir>
# HAKMEM_DROPIN_OPTIONS, when set, is passed to the hakmem run (hakmem-run --options).
# Scenarios: python3 git g++ cmake perl sqlite3
#
# Both runs happen in the same directory (<workdir>/run, renamed to <workdir>/<mode>.tree
# afterwards), so absolute paths a program prints are identical in both. Every process
# prints its own JSON object at exit (a program that spawns children prints several;
# ninja forwards its children's stderr on its stdout), so JSON is collected from both
# streams and summed.
set -uo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 <build-dir> <scenario> <workdir>" >&2
  echo "scenarios: python3 git g++ cmake perl sqlite3" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
scenario=$2
mkdir -p "$3" && work=$(cd "$3" && pwd) || exit 2
hakmem_run="$build/hakmem-run"
[ -x "$hakmem_run" ] || { echo "run_program: $hakmem_run not found (build the hakmem target)" >&2; exit 2; }

# Extra HAKMEM_OPTIONS for the hakmem run (ctest sets hardening=paranoid for Dropin.paranoid.*).
extra_options=${HAKMEM_DROPIN_OPTIONS:-}
unset HAKMEM_DROPIN_OPTIONS

# A clean, deterministic environment for both runs.
unset LD_PRELOAD HAKMEM_OPTIONS PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONMALLOC PERL5LIB PERL5OPT
export LC_ALL=C TZ=UTC
export GIT_PAGER=cat PAGER=cat

mode=glibc
# hk CMD...: runs CMD under the allocator of the current mode.
hk() {
  if [ "$mode" = hakmem ]; then
    "$hakmem_run" --json ${extra_options:+--options "$extra_options"} -- "$@"
  else
    "$@"
  fi
}

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "run_program: '$1' is not installed (ci/deps installs it)" >&2; exit 1; }
}

# ---------------------------------------------------------------------------------------
# Scenarios. Each runs in a fresh current directory with HOME inside it, under `set -e`.
# Whatever they print must be the same for glibc and hakmem.

scenario_python3() {
  need python3
  cat > roundtrip.py <<'PY'
import hashlib, json
# A 200k-entry dict of small dicts, lists and strings: many small objects (Pool) and
# large dict tables and string buffers (Map).
d = {f"key{i:06d}": {"i": i, "s": "x" * (i % 37), "l": [i, i * 2, str(i)], "f": i / 7}
     for i in range(200000)}
s = json.dumps(d, sort_keys=True)
d2 = json.loads(s)
assert d2 == d, "round trip changed the data"
s2 = json.dumps(d2, sort_keys=True, indent=1)
del d
total = sum(v["i"] for v in d2.values())
print("entries", len(d2), "sum", total)
print("compact", len(s), hashlib.sha256(s.encode()).hexdigest())
print("indented", len(s2), hashlib.sha256(s2.encode()).hexdigest())
PY
  # Not -I (= -E -s -P), which would ignore PYTHONMALLOC: with PYTHONMALLOC=malloc every
  # object, not only those above 512 bytes, comes from the process malloc. -s and
  # PYTHONNOUSERSITE keep the user site out; the other PYTHON* variables are unset above.
  PYTHONMALLOC=malloc PYTHONNOUSERSITE=1 hk python3 -s roundtrip.py
}

scenario_git() {
  need git
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME="Drop In" GIT_AUTHOR_EMAIL="dropin@example.invalid"
  export GIT_COMMITTER_NAME="Drop In" GIT_COMMITTER_EMAIL="dropin@example.invalid"
  export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
  hk git init -q -b main repo
  cd repo
  hk git config core.autocrlf false
  # 400 files of text in 20 directories.
  awk 'BEGIN { for (d = 0; d < 20; d++) { system("mkdir -p dir" d);
                 for (f = 0; f < 20; f++) { file = "dir" d "/file" f ".txt";
                   for (l = 0; l < 50; l++) print "line " l " of file " f " in dir " d ": " (d * 7919 + f * 104729 + l * 31) % 100003 > file;
                   close(file) } } }'
  hk git add .
  hk git commit -q -m "initial: 400 files"
  export GIT_AUTHOR_DATE="2024-01-02T00:00:00Z" GIT_COMMITTER_DATE="2024-01-02T00:00:00Z"
  for d in 0 3 7 11; do sed -i 's/line 1[0-9] /LINE /' dir$d/file*.txt; done
  hk git rm -q dir19/file19.txt
  hk git commit -q -a -m "second: edit four dirs, remove one file"
  hk git tag -a v1 -m "tag v1"
  export GIT_AUTHOR_DATE="2024-01-03T00:00:00Z" GIT_COMMITTER_DATE="2024-01-03T00:00:00Z"
  hk git checkout -q -b topic
  printf 'new file\n' > dir0/new.txt
  hk git add dir0/new.txt
  hk git commit -q -m "third: on topic"
  hk git checkout -q main
  hk git merge -q --no-ff -m "merge topic" topic
  echo "== log"
  hk git log --format='%H %an <%ae> %ad %s' --date=iso-strict --stat
  echo "== diff"
  hk git diff --stat v1~1 v1
  hk git diff v1~1 v1 -- dir3/file5.txt
  echo "== grep"
  hk git grep -c 'LINE' v1 -- dir7
  echo "== repack + fsck"
  hk git repack -a -d -q
  hk git fsck --no-progress --strict
  hk git count-objects -v | grep -E '^(count|in-pack|packs):'
  echo "== archive"
  hk git archive --format=tar HEAD | sha256sum
  echo "== ls-tree"
  hk git ls-tree -r HEAD | sha256sum
  hk git rev-list --all --objects | wc -l
}

scenario_g++() {
  need g++
  cat > prog.cpp <<'CPP'
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

int main() {
  std::vector<std::string> words;
  for (int i = 0; i < 100000; ++i) {
    words.push_back("w" + std::to_string((i * 7919) % 10007));
  }
  std::map<std::string, int> counts;
  for (const auto& w : words) ++counts[w];
  std::unordered_map<int, std::vector<std::string>> by_count;
  for (const auto& [w, c] : counts) by_count[c].push_back(w);
  std::vector<std::unique_ptr<std::vector<long>>> blocks;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(std::make_unique<std::vector<long>>(1 << (i % 18), i));
  }
  long sum = 0;
  for (const auto& b : blocks) sum += std::accumulate(b->begin(), b->end(), 0L);
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  std::ostringstream os;
  for (std::size_t i = 0; i < words.size(); i += 1000) os << words[i] << ' ';
  int caught = 0;
  try {
    throw std::runtime_error(std::string(1000, 'e'));
  } catch (const std::exception& e) {
    caught = static_cast<int>(std::string(e.what()).size());
  }
  std::printf("distinct %zu, keys %zu, count-groups %zu\n", words.size(), counts.size(), by_count.size());
  std::printf("blocks sum %ld, caught %d\n", sum, caught);
  std::printf("sample %s\n", os.str().c_str());
  return 0;
}
CPP
  hk g++ -std=c++17 -O2 -frandom-seed=dropin -c prog.cpp -o prog.o
  echo "object $(sha256sum < prog.o)"
  hk g++ prog.o -o prog
  hk ./prog
}

scenario_cmake() {
  need cmake
  mkdir proj
  cat > proj/CMakeLists.txt <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(dropin_demo LANGUAGES C CXX)
include(CheckIncludeFile)
include(CheckSymbolExists)
check_include_file(stdlib.h HAVE_STDLIB_H)
check_symbol_exists(posix_memalign stdlib.h HAVE_POSIX_MEMALIGN)
find_package(Threads REQUIRED)
configure_file(config.h.in config.h)
add_library(util STATIC util.c)
target_include_directories(util PUBLIC ${CMAKE_CURRENT_BINARY_DIR})
add_executable(demo main.cpp)
target_link_libraries(demo PRIVATE util Threads::Threads)
CMAKE
  cat > proj/config.h.in <<'EOF'
#cmakedefine HAVE_STDLIB_H 1
#cmakedefine HAVE_POSIX_MEMALIGN 1
EOF
  cat > proj/util.c <<'EOF'
#include "config.h"
#include <stdlib.h>
#include <string.h>
long util_checksum(int n) {
  long s = 0;
  for (int i = 1; i <= n; ++i) {
    char* p = malloc((size_t)i * 16);
    memset(p, i & 0xff, (size_t)i * 16);
    s += p[i * 8] + i;
    free(p);
  }
#ifdef HAVE_POSIX_MEMALIGN
  void* a = 0;
  if (posix_memalign(&a, 4096, 100000) == 0) { s += ((unsigned long)a % 4096 == 0); free(a); }
#endif
  return s;
}
EOF
  cat > proj/main.cpp <<'EOF'
#include <cstdio>
#include <string>
#include <thread>
#include <vector>
extern "C" long util_checksum(int n);
int main() {
  std::vector<long> r(4);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) ts.emplace_back([&r, t] { r[t] = util_checksum(2000 + t); });
  for (auto& t : ts) t.join();
  std::string s;
  for (long v : r) s += std::to_string(v) + " ";
  std::printf("demo: %s\n", s.c_str());
  return 0;
}
EOF
  local gen=()
  if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
  echo "== configure"
  # Timings are the only part of this output that may differ.
  hk cmake -S proj -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release | sed -E 's/ \([0-9.]+s\)$//'
  echo "configure: ok"
  grep -E '^(HAVE_STDLIB_H|HAVE_POSIX_MEMALIGN|CMAKE_C_COMPILER_ID|CMAKE_CXX_COMPILER_ID)[:=]' build/CMakeCache.txt || true
  cat build/config.h
  echo "== build"
  hk cmake --build build -j 1
  echo "build: ok"
  echo "== run"
  hk ./build/demo
}

scenario_perl() {
  need perl
  cat > work.pl <<'PERL'
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
my %h;
for my $i (1 .. 200000) {
  my $k = sprintf("k%06d-%x", $i, ($i * 2654435761) % 4294967296);
  $h{$k} = join(",", map { $_ * $i } 1 .. 5);
}
my ($n, $sum) = (0, 0);
for my $k (sort keys %h) {
  if ($k =~ /^k(\d+)-([0-9a-f]*7[0-9a-f]*)$/) {
    $n++;
    $sum = ($sum * 31 + $1 + length($2)) % 1000000007;
  }
}
my $text = join(" ", map { "word" . ($_ * 7 % 1000) } 1 .. 100000);
(my $upper = $text) =~ s/word(\d+)/WORD<$1>/g;
my %len;
$len{length $_}++ for split / /, $upper;
delete $h{$_} for grep { /[05]-/ } keys %h;
my @big = map { "x" x ($_ * 1000) } 1 .. 300;
print "matched $n sum $sum\n";
print "lengths ", join(" ", map { "$_:$len{$_}" } sort { $a <=> $b } keys %len), "\n";
print "left ", scalar(keys %h), " big ", length(join "", @big), "\n";
print "digest ", md5_hex(join ";", map { "$_=$h{$_}" } sort keys %h), "\n";
PERL
  hk perl work.pl
}

scenario_sqlite3() {
  need sqlite3
  cat > work.sql <<'SQL'
PRAGMA cache_size = -32000;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, blob BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, x % 97, 'name' || (x * 7919 % 100003), (x * 31 % 1000) / 10.0,
                     zeroblob(x % 200) FROM c;
CREATE INDEX t_grp ON t(grp, val);
SELECT count(*), sum(id), printf('%.4f', avg(val)), min(name), max(name), sum(length(blob)) FROM t;
SELECT grp, count(*), printf('%.1f', sum(val)), max(val) FROM t GROUP BY grp ORDER BY grp LIMIT 8;
SELECT count(DISTINCT name) FROM t;
SELECT group_concat(id, ',') FROM (SELECT id FROM t ORDER BY val DESC, id LIMIT 15);
SELECT grp, id, rnk FROM (SELECT grp, id, rank() OVER (PARTITION BY grp ORDER BY val DESC, id) AS rnk FROM t)
 WHERE rnk = 1 ORDER BY grp LIMIT 5;
SELECT a.grp, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.grp = (b.grp + 1) % 97 GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 3;
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
SELECT count(*), sum(id) FROM t;
PRAGMA integrity_check;
SQL
  hk sqlite3 -batch work.db < work.sql
}

# ---------------------------------------------------------------------------------------

case "$scenario" in
  python3|git|g++|cmake|perl|sqlite3) ;;
  *) echo "run_program: unknown scenario '$scenario' (python3 git g++ cmake perl sqlite3)" >&2; exit 2 ;;
esac

now() { date +%s.%N; }
declare -A rc secs
for mode in glibc hakmem; do
  rm -rf "$work/run" "$work/$mode.tree"
  mkdir -p "$work/run/home"
  t0=$(now)
  (
    set -e
    cd "$work/run"
    export HOME="$work/run/home"
    "scenario_$scenario"
  ) > "$work/$mode.out" 2> "$work/$mode.err"
  rc[$mode]=$?
  secs[$mode]=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  mv "$work/run" "$work/$mode.tree"
done

# Collect the JSON objects from the hakmem run, strip them from its streams, check and compare.
python3 -I - "$work" "$scenario" "${rc[glibc]}" "${rc[hakmem]}" "${secs[glibc]}" "${secs[hakmem]}" "$extra_options" <<'PY'
import json, re, sys, difflib
work, scenario, rc_glibc, rc_hakmem, t_glibc, t_hakmem, extra = sys.argv[1:8]
rc_glibc, rc_hakmem = int(rc_glibc), int(rc_hakmem)

def read(name):
    with open(f"{work}/{name}", "rb") as f:
        return f.read().decode("utf-8", "replace")

def extract(text):
    """Returns (text without hakmem JSON objects, [objects])."""
    dec = json.JSONDecoder()
    out, objs, pos = [], [], 0
    while True:
        i = text.find('{"hakmem":', pos)
        if i < 0:
            out.append(text[pos:])
            break
        try:
            obj, end = dec.raw_decode(text, i)
        except ValueError:
            out.append(text[pos:i + 1])
            pos = i + 1
            continue
        objs.append(obj["hakmem"])
        out.append(text[pos:i])
        # The object is printed on a line of its own: drop its newline too.
        if end < len(text) and text[end] == "\n" and (i == 0 or text[i - 1] == "\n"):
            end += 1
        pos = end
    return "".join(out), objs

failures = []
g_out, g_err = read("glibc.out"), read("glibc.err")
h_out, objs_out = extract(read("hakmem.out"))
h_err, objs_err = extract(read("hakmem.err"))
objs = objs_out + objs_err
_, stray = extract(g_out + g_err)
if stray:
    failures.append("the glibc run printed hakmem JSON: LD_PRELOAD/HAKMEM_OPTIONS leaked into it")

def total(key, field):
    return sum(int(o.get(key, {}).get(field, 0)) for o in objs)

pool, mapped = total("pool", "allocs"), total("map", "allocs")
frees = total("pool", "frees") + total("map", "frees")
errors = total("errors", "total")
served = pool + mapped

if rc_glibc != 0:
    failures.append(f"the glibc run failed (exit {rc_glibc}): the scenario or the machine is broken")
if rc_hakmem != rc_glibc:
    failures.append(f"exit codes differ: glibc {rc_glibc}, hakmem {rc_hakmem}")
if not objs:
    failures.append("no process printed hakmem stats: libhakmem.so was not preloaded or never ran its exit hook")
elif served == 0:
    failures.append("hakmem served nothing: pool.allocs + map.allocs == 0 over all processes")
# Every process ran in the hardening mode asked for (hardening=paranoid through HAKMEM_DROPIN_OPTIONS).
want_mode = "paranoid" if "hardening=paranoid" in extra else "default"
modes = sorted({o.get("hardening", {}).get("mode", "?") for o in objs})
if objs and modes != [want_mode]:
    failures.append(f"hardening mode {modes} in the hakmem run, expected {want_mode}")
if errors:
    kinds = {}
    for o in objs:
        for k, v in o.get("errors", {}).items():
            if k != "total" and v:
                kinds[k] = kinds.get(k, 0) + int(v)
    failures.append(f"hakmem reported {errors} error(s): {kinds}")
reports = [l for l in (h_out + h_err).splitlines() if l.startswith("hakmem:")]
if reports:
    failures.append("hakmem printed reports/warnings:\n    " + "\n    ".join(reports[:20]))

def compare(name, a, b):
    if a == b:
        return
    diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), f"glibc.{name}", f"hakmem.{name}", lineterm="", n=1))
    shown = "\n    ".join(diff[:60]) + ("\n    ..." if len(diff) > 60 else "")
    failures.append(f"{name} differs between glibc and hakmem:\n    {shown}")

compare("stdout", g_out, h_out)
compare("stderr", g_err, h_err)

status = "FAIL" if failures else "PASS"
print(f"Dropin.{scenario}: {status} hardening={want_mode} processes={len(objs)} allocs={served} (pool {pool}, map {mapped}) "
      f"frees={frees} errors={errors} exit glibc={rc_glibc} hakmem={rc_hakmem} "
      f"time glibc={t_glibc}s hakmem={t_hakmem}s")
for f in failures:
    print("  - " + f)
if failures:
    print(f"  outputs: {work}/glibc.out|err, {work}/hakmem.out|err; trees: {work}/glibc.tree, {work}/hakmem.tree")
sys.exit(1 if failures else 0)
PY
status=$?
# The trees are kept for a failure only.
[ $status -eq 0 ] && rm -rf "$work/glibc.tree" "$work/hakmem.tree"
exit $status
