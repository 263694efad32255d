#!/bin/bash -eu
# OSS-Fuzz / ClusterFuzzLite build: every fuzz target into $OUT with its seed corpus zip,
# .options and .dict. Uses only $CXX, $CXXFLAGS and $LIB_FUZZING_ENGINE (the OSS-Fuzz contract).
#   CXX=clang++ CXXFLAGS="-fsanitize=address,undefined -fsanitize=fuzzer-no-link -g -O1" \
#   LIB_FUZZING_ENGINE=-fsanitize=fuzzer OUT=/tmp/fuzzout SRC=/path/to/parent fuzz/build.sh

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${OUT:?set OUT to the output directory}"
: "${CXX:=clang++}"
: "${CXXFLAGS:=}"
: "${LIB_FUZZING_ENGINE:=-fsanitize=fuzzer}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$OUT" "$WORK/obj"

TARGETS="fuzz_ops fuzz_header fuzz_realloc fuzz_selector fuzz_options"
INCLUDES="-I$ROOT/src -I$ROOT/include -I$ROOT/tests -I$ROOT/fuzz"
# The library sources the targets need (the top-level CMakeLists.txt's HAKMEM_IMPL_SOURCES).
LIB_SOURCES="src/core/options.cpp src/header/header.cpp src/front/stats.cpp"

objs=()
for src in $LIB_SOURCES; do
  obj="$WORK/obj/$(basename "${src%.cpp}").o"
  $CXX $CXXFLAGS -std=c++20 $INCLUDES -c "$ROOT/$src" -o "$obj"
  objs+=("$obj")
done

for t in $TARGETS; do
  $CXX $CXXFLAGS -std=c++20 $INCLUDES -c "$ROOT/fuzz/$t.cpp" -o "$WORK/obj/$t.o"
  $CXX $CXXFLAGS $LIB_FUZZING_ENGINE "$WORK/obj/$t.o" "${objs[@]}" -o "$OUT/$t" -lpthread -ldl -lm
  rm -f "$OUT/${t}_seed_corpus.zip"
  (cd "$ROOT/fuzz/corpus/$t" && zip -q -j "$OUT/${t}_seed_corpus.zip" ./*)
  cp "$ROOT/fuzz/$t.options" "$OUT/"
  if [ -f "$ROOT/fuzz/$t.dict" ]; then cp "$ROOT/fuzz/$t.dict" "$OUT/"; fi
done
echo "fuzz/build.sh: $(echo $TARGETS | wc -w) targets in $OUT"
