#!/usr/bin/env bash
# Runs the benchmarks of bench/RESULTS.md. Usage: bench/run.sh [test-name-regexp] [-- extra go test args]
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
shift || true
# "--" separates the pattern from go test's arguments; go test would hand
# it to the test binary, whose flag parsing stops there, silently dropping
# every benchmark flag after it.
if [ "${1:-}" = "--" ]; then shift; fi
go test -tags bench -count=1 -timeout 60m -run "TestBench($pattern)" -v ./bench/ "$@" 2>&1 | tee /tmp/raftcdc-bench.log | grep -E '^(RESULT|--- |ok|FAIL|\s+\S+_test.go)'
