#!/usr/bin/env bash
# Runs the benchmarks of bench/RESULTS.md. Usage: bench/run.sh [test-name-regexp] [-- extra go test args]
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
shift || true
go test -tags bench -count=1 -timeout 60m -run "TestBench($pattern)" -v ./bench/ "$@" 2>&1 | tee /tmp/raftcdc-bench.log | grep -E '^(RESULT|--- |ok|FAIL|\s+\S+_test.go)'
