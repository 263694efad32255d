#!/usr/bin/env bash
# Paranoid-mode misuse through the real drop-in: runs one case of tests/programs/paranoid_misuse
# under `hakmem-run --options hardening=paranoid` and checks what must happen:
#   report REGEX  the process aborts (SIGABRT, on_error=abort) after one hakmem report matching REGEX
#   segv          the process dies of SIGSEGV (a protected page), with no hakmem report
#   silent        exit 0, the case's "ok" line, and no hakmem output at all
#
# Usage: paranoid_misuse.sh <build-dir> <program> <case> report <regex> | segv | silent
set -uo pipefail
[ $# -ge 4 ] || { echo "usage: $0 <build-dir> <program> <case> report <regex> | segv | silent" >&2; exit 2; }
build=$1 prog=$2 case=$3 want=$4
regex=${5:-}
unset HAKMEM_OPTIONS LD_PRELOAD
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$build/hakmem-run" --options hardening=paranoid -- "$prog" "$case" >"$out" 2>"$err"
status=$?
fail() {
  echo "paranoid_misuse $case: $*" >&2
  echo "--- exit status $status; stderr:" >&2
  cat "$err" >&2
  exit 1
}
reports=$(grep -c '^hakmem: ' "$err")
case $want in
  report)
    [ "$status" -eq 134 ] || fail "expected SIGABRT (134) after the report"
    [ "$reports" -eq 1 ] || fail "expected exactly one hakmem report, got $reports"
    grep -Eq "$regex" "$err" || fail "the report does not match: $regex"
    ;;
  segv)
    [ "$status" -eq 139 ] || fail "expected SIGSEGV (139)"
    [ "$reports" -eq 0 ] || fail "a protected page faults: no hakmem report expected"
    ;;
  silent)
    [ "$status" -eq 0 ] || fail "expected exit 0"
    [ -s "$err" ] && fail "expected no output on stderr"
    grep -q "ok" "$out" || fail "the case did not finish"
    ;;
  *) echo "paranoid_misuse: unknown expectation $want" >&2; exit 2 ;;
esac
echo "paranoid_misuse $case: as expected ($want)"
