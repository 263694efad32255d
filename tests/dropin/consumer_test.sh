#!/usr/bin/env bash
# Consumer test: installs hakmem from <build-dir> into <workdir>/prefix, then
#   1. configures and builds tests/dropin/consumer (find_package(hakmem) + hakmem::shim_static)
#      against that prefix alone, and runs it: it exits non-zero unless hakmem served its malloc;
#   2. checks the installed hakmem.pc: `pkg-config --cflags --libs hakmem` must name the prefix,
#      and a program built with those flags must run on the installed libhakmem.so
#      (skipped when pkg-config is not installed; ci/deps installs it);
#   3. runs the installed hakmem-run on a program: it must find the installed library.
# Usage: consumer_test.sh <build-dir> <workdir>
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <build-dir> <workdir>" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && work=$(cd "$2" && pwd) || exit 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix="$work/prefix"
unset LD_PRELOAD HAKMEM_OPTIONS
export LC_ALL=C

failures=0
fail() { echo "consumer_test: FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "consumer_test: ok: $*"; }
# run LOG CMD...: runs CMD with its output in LOG, shown when it fails.
run() {
  local log=$1; shift
  local rc=0
  "$@" > "$log" 2>&1 || rc=$?
  [ $rc -eq 0 ] && return 0
  {
    echo "consumer_test: '$*' failed (exit $rc):"
    sed 's/^/    /' "$log" | tail -40
  } >&2
  return $rc
}

rm -rf "$prefix" "$work/consumer-build" "$work/pc"
mkdir -p "$work/pc"

# 1. Install, then consume through CMake, with nothing but the prefix to find hakmem.
run "$work/install.log" cmake --install "$build" --prefix "$prefix" || { fail "cmake --install"; exit 1; }
# The library directory is lib/ unless the build was configured for /usr (lib/<multiarch>).
so=$(find "$prefix" -name libhakmem.so -print -quit)
libdir=$(dirname "${so:-$prefix/lib/libhakmem.so}")
lib=${libdir#"$prefix"/}
for f in include/hakmem/hakmem.h "$lib/libhakmem.so" "$lib/libhakmem_shim_static.a" "$lib/libhakmem_core.a" \
         "$lib/cmake/hakmem/hakmemConfig.cmake" "$lib/pkgconfig/hakmem.pc" bin/hakmem-run; do
  [ -e "$prefix/$f" ] || fail "the install tree lacks $f"
done
gen=()
command -v ninja > /dev/null 2>&1 && gen=(-G Ninja)
# consume DIR LANGUAGES: configures, builds and runs the consumer; 0 when all three pass.
consume() {
  local dir=$1 langs=$2
  rm -rf "$dir"
  run "$dir.configure.log" cmake -S "$here/consumer" -B "$dir" "${gen[@]}" \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
      -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release \
      -DHAKMEM_CONSUMER_LANGUAGES="$langs" || { echo "configure"; return 1; }
  local found
  found=$(grep -o 'hakmem [0-9.]* from .*' "$dir.configure.log")
  case "$found" in
    *" from $prefix/"*) ;;
    *) echo "find_package(hakmem) did not find the package under $prefix: '$found'"; return 1 ;;
  esac
  run "$dir.build.log" cmake --build "$dir" || { echo "build"; return 1; }
  run "$dir.run.log" "$dir/consumer" || { echo "run"; return 1; }
  echo "$found; $(grep '^consumer:' "$dir.run.log" | head -1)"
}
if result=$(consume "$work/consumer-build" C); then
  ok "C consumer of hakmem::shim_static: $result"
else
  fail "the C consumer project (find_package(hakmem) + hakmem::shim_static) failed at: $result"
  if [ "$result" = build ]; then
    # Diagnose: does it link when the consumer enables C++ (the C++ linker and runtime)?
    if result=$(consume "$work/consumer-build-cxx" "C;CXX"); then
      echo "consumer_test: the same consumer links and runs when it enables CXX ($result):"
      echo "    the exported static targets need the C++ runtime but do not say so in their link interface"
    else
      echo "consumer_test: with CXX enabled too it fails at: $result"
    fi
  fi
fi

# 2. pkg-config, with nothing but the prefix's pkgconfig directory.
if command -v pkg-config > /dev/null 2>&1; then
  export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
  if flags=$(pkg-config --cflags --libs hakmem 2> "$work/pc/pkg-config.err"); then
    echo "consumer_test: pkg-config --cflags --libs hakmem: $flags"
    # The directories it names, resolved (a relocatable .pc names ${pcfiledir}/../..).
    incs="" libs=""
    for w in $flags; do
      case "$w" in
        -I*) incs="$incs $(realpath -m "${w#-I}")" ;;
        -L*) libs="$libs $(realpath -m "${w#-L}")" ;;
      esac
    done
    case "$incs " in
      *" $prefix/include "*) ;;
      *) fail "pkg-config --cflags names$incs, not $prefix/include: hakmem.pc does not follow the install prefix" ;;
    esac
    case "$libs " in
      *" $libdir "*) ;;
      *) fail "pkg-config --libs names$libs, not $libdir: hakmem.pc does not follow the install prefix" ;;
    esac
    cat > "$work/pc/pc.c" <<'EOF'
#include <hakmem/hakmem.h>
#include <stdio.h>
#include <string.h>
static void out(void* arg, const char* text, size_t len) { (void)arg; fwrite(text, 1, len, stdout); }
int main(void) {
  void* p = hak_alloc(1000);
  if (!p) return 1;
  memset(p, 0, 1000);
  hak_free(p);
  hak_stats_print_json(out, NULL);
  return 0;
}
EOF
    # shellcheck disable=SC2086  # the flags are words
    if run "$work/pc/build.log" cc -o "$work/pc/pc" "$work/pc/pc.c" $flags; then
      if run "$work/pc/run.log" env LD_LIBRARY_PATH="$libdir" "$work/pc/pc" \
         && grep -q '"pool":{"allocs":[1-9]' "$work/pc/run.log"; then
        ok "a program built with pkg-config's flags runs on the installed libhakmem.so"
      else
        fail "the program built with pkg-config's flags did not run on libhakmem.so"
      fi
    else
      fail "building a program with pkg-config's flags"
    fi
  else
    fail "pkg-config --cflags --libs hakmem: $(cat "$work/pc/pkg-config.err")"
  fi
  unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR
else
  echo "consumer_test: pkg-config is not installed: skipping the hakmem.pc check (ci/deps installs it)"
fi

# 3. The installed launcher must use the installed library.
if run "$work/hakmem-run.log" "$prefix/bin/hakmem-run" --json -- bash -c 'echo launched' \
   && grep -q '^launched$' "$work/hakmem-run.log" && grep -q '"pool":{"allocs":[1-9]' "$work/hakmem-run.log"; then
  ok "the installed hakmem-run preloads the installed libhakmem.so"
else
  fail "the installed hakmem-run does not run programs on the installed library: $(head -1 "$work/hakmem-run.log")"
fi

if [ $failures -ne 0 ]; then
  echo "consumer_test: $failures failure(s); logs in $work"
  exit 1
fi
echo "consumer_test: PASS"
