#!/usr/bin/env bash
# Consumer tests: hakmem used from another project, the ways its users use it. Each mode builds
# tests/dropin/consumer/main.c, a C program that exits non-zero unless hakmem served its malloc
# (Pool and Map both) without an error report.
#   package       installs <build-dir> into <workdir>/prefix; a CMake project finds it with
#                 find_package(hakmem) and links hakmem::shim_static (tests/dropin/consumer);
#                 the installed hakmem-run must preload the installed library.
#   pkg-config    installs likewise; a plain Makefile project (tests/dropin/makefile) builds with
#                 `pkg-config --cflags --libs hakmem` alone and runs on the installed libhakmem.so.
#   subproject    a CMake project builds hakmem from this source tree with add_subdirectory
#   fetchcontent  ... or with FetchContent (tests/dropin/subproject): libraries only, package names.
#   uninstall     installs, then `cmake --build <build-dir> --target uninstall` must leave no
#                 file of hakmem's in the prefix, and a second uninstall must find nothing left.
# The modes that install rewrite <build-dir>/install_manifest.txt: ctest runs them one at a time
# (RESOURCE_LOCK), so an uninstall never reads another test's manifest.
# Usage: consumer_test.sh <build-dir> <workdir> <mode>
set -uo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 <build-dir> <workdir> package|pkg-config|subproject|fetchcontent|uninstall" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && work=$(cd "$2" && pwd) || exit 2
mode=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
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
finish() {
  if [ $failures -ne 0 ]; then
    echo "consumer_test $mode: $failures failure(s); logs in $work"
    exit 1
  fi
  echo "consumer_test $mode: PASS"
  exit 0
}
# The outer build's compilers, so the clang suite's consumers build with clang.
cache_value() { sed -nE "s/^$1:[A-Z]+=(.*)/\1/p" "$build/CMakeCache.txt" | head -1; }
cc=$(cache_value CMAKE_C_COMPILER)
cxx=$(cache_value CMAKE_CXX_COMPILER)
gen=()
command -v ninja > /dev/null 2>&1 && gen=(-G Ninja)

# install: a fresh prefix from the build tree; sets libdir (lib/ unless configured for /usr).
# The install rewrites the build's install_manifest.txt: a user's own manifest (of a real install
# from this build tree) is put back when the test exits.
manifest="$build/install_manifest.txt"
restore_manifest() {
  if [ -f "$work/manifest.saved" ]; then
    mv -f "$work/manifest.saved" "$manifest"
  else
    rm -f "$manifest"
  fi
}
install_tree() {
  rm -f "$work/manifest.saved"
  [ -f "$manifest" ] && cp "$manifest" "$work/manifest.saved"
  trap restore_manifest EXIT
  rm -rf "$prefix"
  run "$work/install.log" cmake --install "$build" --prefix "$prefix" || { fail "cmake --install"; finish; }
  local so
  so=$(find "$prefix" -name libhakmem.so -print -quit)
  libdir=$(dirname "${so:-$prefix/lib/libhakmem.so}")
  local lib=${libdir#"$prefix"/} f
  for f in include/hakmem/hakmem.h "$lib/libhakmem.so" "$lib/libhakmem_shim_static.a" "$lib/libhakmem_core.a" \
           "$lib/cmake/hakmem/hakmemConfig.cmake" "$lib/pkgconfig/hakmem.pc" bin/hakmem-run; do
    [ -e "$prefix/$f" ] || fail "the install tree lacks $f"
  done
}

# consume DIR LANGUAGES: configures, builds and runs the find_package consumer; 0 when all pass.
consume() {
  local dir=$1 langs=$2
  rm -rf "$dir"
  run "$dir.configure.log" cmake -S "$here/consumer" -B "$dir" "${gen[@]}" \
      -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
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

mode_package() {
  install_tree
  local result
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
  # The installed launcher must use the installed library.
  if run "$work/hakmem-run.log" "$prefix/bin/hakmem-run" --json -- bash -c 'echo launched' \
     && grep -q '^launched$' "$work/hakmem-run.log" && grep -q '"pool":{"allocs":[1-9]' "$work/hakmem-run.log"; then
    ok "the installed hakmem-run preloads the installed libhakmem.so"
  else
    fail "the installed hakmem-run does not run programs on the installed library: $(head -1 "$work/hakmem-run.log")"
  fi
}

mode_pkg_config() {
  command -v pkg-config > /dev/null 2>&1 || { fail "pkg-config is not installed (ci/deps installs it)"; finish; }
  command -v make > /dev/null 2>&1 || { fail "make is not installed"; finish; }
  install_tree
  # Nothing but the prefix's pkgconfig directory.
  export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
  local flags
  flags=$(pkg-config --cflags --libs hakmem 2> "$work/pkg-config.err") \
    || { fail "pkg-config --cflags --libs hakmem: $(cat "$work/pkg-config.err")"; finish; }
  echo "consumer_test: pkg-config --cflags --libs hakmem: $flags"
  # The directories it names, resolved (a relocatable .pc names ${pcfiledir}/../..).
  local incs="" libs="" w
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
  # The Makefile project, built out of the source tree, run with no library path set.
  rm -rf "$work/make" && mkdir -p "$work/make"
  if run "$work/make/build.log" make -C "$here/makefile" O="$work/make" CC="$cc"; then
    if run "$work/make/run.log" env -u LD_LIBRARY_PATH "$work/make/consumer"; then
      # ldd's output whole, then grep: `ldd | grep -q` under pipefail fails whenever grep's early
      # exit kills ldd with SIGPIPE (seen once in a clang suite).
      local loaded
      loaded=$(ldd "$work/make/consumer")
      if grep -q "libhakmem.so.* => $libdir/" <<< "$loaded"; then
        ok "the Makefile project built with pkg-config's flags runs on $libdir/libhakmem.so: $(grep '^consumer:' "$work/make/run.log" | head -1)"
      else
        fail "the Makefile project does not load the installed libhakmem.so: $(grep hakmem <<< "$loaded")"
      fi
    else
      fail "the Makefile project's program did not run on hakmem"
    fi
  else
    fail "building the Makefile project with pkg-config's flags"
  fi
}

# mode_subproject VIA: hakmem from this source tree, inside a consumer's own build.
mode_subproject() {
  local via=$1 dir="$work/build"
  rm -rf "$dir"
  run "$work/configure.log" cmake -S "$here/subproject" -B "$dir" "${gen[@]}" \
      -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
      -DHAKMEM_SOURCE="$source_dir" -DHAKMEM_VIA="$via" \
    || { fail "configuring a project that takes hakmem through $via"; finish; }
  grep -q "hakmem via $via: hakmem::core, hakmem::shim, hakmem::shim_static; no tests" "$work/configure.log" \
    || { fail "the consumer's configure checks did not run"; finish; }
  # The consumer's default target: hakmem's libraries and its own program, nothing more.
  run "$work/build.log" cmake --build "$dir" || { fail "building the consumer with hakmem via $via"; finish; }
  local built
  built=$(find "$dir" -type f \( -name '*_test' -o -name 'props_*' -o -name '*_replay' -o -name hakmem_demo \) | head -3)
  [ -z "$built" ] || fail "the consumer's build made hakmem's test programs: $built"
  if run "$work/run.log" "$dir/consumer"; then
    ok "hakmem via $via: $(grep '^consumer:' "$work/run.log" | head -1)"
  else
    fail "the consumer built with hakmem via $via did not run on hakmem"
  fi
}

mode_uninstall() {
  install_tree
  local listed left
  [ -s "$manifest" ] || { fail "cmake --install wrote no $manifest"; finish; }
  listed=$(grep -c "^$prefix/" "$manifest")
  [ "$listed" -ge 7 ] || fail "install_manifest.txt lists $listed files under $prefix"
  if run "$work/uninstall.log" cmake --build "$build" --target uninstall; then
    left=$(find "$prefix" -type f -o -type l)
    if [ -z "$left" ]; then
      ok "uninstall removed the $listed files install_manifest.txt lists: $(grep -o '[0-9]* files removed.*' "$work/uninstall.log" | head -1)"
    else
      fail "uninstall left files in the prefix: $(echo "$left" | head -5)"
    fi
    [ ! -d "$prefix/include/hakmem" ] || fail "uninstall left the empty directory include/hakmem"
    # A second uninstall finds nothing to remove and says so.
    if run "$work/uninstall2.log" cmake --build "$build" --target uninstall \
       && grep -q " 0 files removed, $listed already gone" "$work/uninstall2.log"; then
      ok "a second uninstall removes nothing"
    else
      fail "a second uninstall did not report 0 files removed and $listed already gone"
    fi
  else
    fail "cmake --build --target uninstall"
  fi
}

case "$mode" in
  package) mode_package ;;
  pkg-config) mode_pkg_config ;;
  subproject) mode_subproject add_subdirectory ;;
  fetchcontent) mode_subproject FetchContent ;;
  uninstall) mode_uninstall ;;
  *) echo "consumer_test: unknown mode '$mode'" >&2; exit 2 ;;
esac
finish
