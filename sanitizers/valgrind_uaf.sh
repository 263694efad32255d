#!/usr/bin/env bash
# Runs the Valgrind track program (tests/programs/track_uaf.cpp) on one case under memcheck.
# A use-after-free case passes when memcheck reports an invalid read or write into a block it
# knows as freed (hakmem's client requests told it so); "clean" passes with zero errors.
# Usage: sanitizers/valgrind_uaf.sh TRACK_UAF_BINARY CASE
set -uo pipefail
bin=$1
what=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
valgrind --tool=memcheck --error-exitcode=99 --track-origins=no -q "$bin" "$what" >"$log" 2>&1
rc=$?
fail() {
  echo "valgrind_uaf $what: FAILED: $1 (exit $rc)"
  cat "$log"
  exit 1
}
case "$what" in
  clean)
    [ "$rc" -eq 0 ] || fail "memcheck reported errors, or the program failed, on clean use"
    echo "valgrind_uaf clean: 0 errors"
    exit 0 ;;
  *-read) want='Invalid read of size 1' ;;
  *-write) want='Invalid write of size 1' ;;
  *) fail "unknown case" ;;
esac
[ "$rc" -eq 99 ] || fail "memcheck did not fail the run (--error-exitcode=99)"
grep -q "$want" "$log" || fail "no '$want' report"
# memcheck names the block hakmem freed: "Address 0x... is N bytes inside a block of size M free'd"
grep -qE "inside a block of size [0-9,]+ free'd" "$log" || fail "the report does not name a freed block"
echo "valgrind_uaf $what: caught: $want, $(grep -oE "[0-9,]+ bytes inside a block of size [0-9,]+ free'd" "$log" | head -1)"
