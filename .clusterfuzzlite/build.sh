#!/bin/bash -eu
# ClusterFuzzLite entry point: the project's own fuzz/build.sh does the work.
"$SRC/hakmem/fuzz/build.sh"
