#!/usr/bin/env bash
# hakmem-run, the launcher: usage errors, --stats, --json, --options, an existing
# HAKMEM_OPTIONS and LD_PRELOAD kept and extended, and the program's exit status passed on.
# Usage: hakmem_run_test.sh <build-dir>
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 <build-dir>" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
hr="$build/hakmem-run"
[ -x "$hr" ] || { echo "hakmem_run_test: $hr not found (build the hakmem target)" >&2; exit 2; }
lib=$(sed -n 's/^lib="\(.*\)"$/\1/p' "$hr")  # the library it preloads
[ -f "$lib" ] || { echo "hakmem_run_test: $hr names no existing library ('$lib')" >&2; exit 2; }
unset LD_PRELOAD HAKMEM_OPTIONS
export LC_ALL=C
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem_run_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

failures=0
checks=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  checks=$((checks + 1))
  if "$@"; then
    echo "ok: $name"
  else
    echo "FAIL: $name"
    echo "  stdout: $(head -c 600 "$tmp/out")"
    echo "  stderr: $(head -c 600 "$tmp/err")"
    failures=$((failures + 1))
  fi
}
# launch ARGS...: runs hakmem-run ARGS with output in $tmp/out, $tmp/err and status in $rc.
launch() {
  rc=0
  "$hr" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
}
# json FIELD...: prints hakmem's JSON values at the paths section.key (from $tmp/err).
json() {
  python3 -I - "$tmp/err" "$@" <<'PY'
import json, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
i = text.find('{"hakmem":')
if i < 0:
    print("no-json")
    sys.exit(0)
obj, _ = json.JSONDecoder().raw_decode(text, i)
vals = []
for path in sys.argv[2:]:
    v = obj["hakmem"]
    for k in path.split("."):
        v = v.get(k, "missing") if isinstance(v, dict) else "missing"
    vals.append(str(v))
print(" ".join(vals))
PY
}
is() { [ "$1" = "$2" ] || { echo "  expected '$2', got '$1'"; return 1; }; }
has() { grep -q -- "$2" "$1"; }
hasnt() { ! grep -q -- "$2" "$1"; }
# bash exits through exit(), so the library's exit hook runs and prints; the program
# prints its environment so the test sees what hakmem-run exported.
show_env='printf "HAKMEM_OPTIONS=%s\nLD_PRELOAD=%s\n" "${HAKMEM_OPTIONS-unset}" "${LD_PRELOAD-unset}"'

# Usage errors: exit 2 with the usage on stderr, the program never run.
launch
check "no arguments: exit 2" is "$rc" 2
check "no arguments: usage on stderr" has "$tmp/err" "^usage: hakmem-run"
launch --json --
check "no program after --: exit 2 with usage" eval '[ "$rc" = 2 ] && has "$tmp/err" "^usage: hakmem-run"'
launch --options
check "--options without a value: exit 2 with usage" eval '[ "$rc" = 2 ] && has "$tmp/err" "^usage: hakmem-run"'
launch --bogus -- true
check "unknown flag: exit 2, named, with usage" \
  eval '[ "$rc" = 2 ] && has "$tmp/err" "unknown flag --bogus" && has "$tmp/err" "^usage: hakmem-run"'
launch --help
check "--help: usage, exit 2" eval '[ "$rc" = 2 ] && has "$tmp/err" "^usage: hakmem-run"'
sed 's|^lib=.*|lib="/nonexistent/libhakmem.so"|' "$hr" > "$tmp/hakmem-run-nolib" && chmod +x "$tmp/hakmem-run-nolib"
rc=0; "$tmp/hakmem-run-nolib" -- true > "$tmp/out" 2> "$tmp/err" || rc=$?
check "missing library: exit 2, named" eval '[ "$rc" = 2 ] && has "$tmp/err" "/nonexistent/libhakmem.so not found"'

# A plain run: the program runs preloaded, prints nothing extra.
launch -- bash -c "echo plain; $show_env"
check "plain run: exit 0, output intact" eval '[ "$rc" = 0 ] && has "$tmp/out" "^plain$"'
check "plain run: LD_PRELOAD is the library" has "$tmp/out" "^LD_PRELOAD=$lib$"
check "plain run: no stats on stderr" eval '! [ -s "$tmp/err" ]'

# --stats: the table on stderr.
launch --stats -- bash -c 'echo table'
check "--stats: exit 0, output intact" eval '[ "$rc" = 0 ] && has "$tmp/out" "^table$"'
check "--stats: 'hakmem stats' table on stderr" has "$tmp/err" "hakmem stats"
check "--stats: the table, not JSON" hasnt "$tmp/err" '{"hakmem":'

# --json: one JSON object on stderr, showing served allocations and no errors.
launch --json -- bash -c "echo json; $show_env"
check "--json: HAKMEM_OPTIONS=stats=json" has "$tmp/out" "^HAKMEM_OPTIONS=stats=json$"
check "--json: pool allocs > 0, errors 0" eval '[ "$(json errors.total)" = 0 ] && [ "$(json pool.allocs)" -gt 0 ]'

# --options passes options (both spellings).
launch --json --options cache=1m -- bash -c 'echo opts'
check "--options cache=1m: bigcache cap 1048576" is "$(json bigcache.cap)" 1048576
launch --json --options=cache=3m:threshold=1m -- bash -c 'echo opts'
check "--options=cache=3m:threshold=1m: cap and threshold" is "$(json bigcache.cap selector.threshold)" "3145728 1048576"

# An existing HAKMEM_OPTIONS is kept and extended; what hakmem-run adds comes after it.
rc=0
HAKMEM_OPTIONS=threshold=2m "$hr" --json --options cache=2m -- bash -c "$show_env" > "$tmp/out" 2> "$tmp/err" || rc=$?
check "HAKMEM_OPTIONS kept and extended" has "$tmp/out" "^HAKMEM_OPTIONS=threshold=2m:cache=2m:stats=json$"
check "HAKMEM_OPTIONS kept: threshold from the environment, cap from --options" \
  is "$(json selector.threshold bigcache.cap)" "2097152 2097152"
rc=0
HAKMEM_OPTIONS=stats=1:cache=4m "$hr" --json -- bash -c 'echo later' > "$tmp/out" 2> "$tmp/err" || rc=$?
check "HAKMEM_OPTIONS=stats=1 then --json: the later stats=json wins, cache=4m kept" \
  is "$(json bigcache.cap)" 4194304

# The program's exit status is passed on (hakmem-run execs it).
launch -- sh -c 'exit 7'
check "exit status 7 passed on" is "$rc" 7
launch --json -- bash -c 'exit 42'
check "exit status 42 passed on with --json" is "$rc" 42
# (in a subshell whose stderr is dropped: it reports "Terminated")
rc=$("$hr" -- bash -c 'kill -TERM $$' > "$tmp/out" 2> "$tmp/err"; echo $?) 2> /dev/null
check "death by SIGTERM passed on (143)" is "$rc" 143
launch -- /nonexistent/program
check "a missing program: non-zero (exec fails)" eval '[ "$rc" -ne 0 ]'

# An existing LD_PRELOAD is kept, after the library; both libraries are loaded.
cat > "$tmp/other.c" <<'EOF'
#include <unistd.h>
__attribute__((constructor)) static void other_preload(void) { write(1, "other preload loaded\n", 21); }
EOF
if cc -shared -fPIC -o "$tmp/libother.so" "$tmp/other.c" 2> "$tmp/err"; then
  rc=0
  LD_PRELOAD="$tmp/libother.so" "$hr" --json -- bash -c "$show_env" > "$tmp/out" 2> "$tmp/err" || rc=$?
  check "LD_PRELOAD kept, after the library" has "$tmp/out" "^LD_PRELOAD=$lib:$tmp/libother.so$"
  check "LD_PRELOAD kept: the other library is loaded" has "$tmp/out" "^other preload loaded$"
  check "LD_PRELOAD kept: hakmem still serves malloc" eval '[ "$(json pool.allocs)" -gt 0 ]'
else
  check "building a second preload library with cc" false
fi

echo "hakmem_run_test: $((checks - failures))/$checks checks passed"
[ $failures -eq 0 ]
