#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the whole suite: C unit tests (cmocka), then the end-to-end tests
# (pytest under Debian's python3, root, network namespaces). Ends with one
# line CI can read: "N passed, N failed, N skipped". SL_ONLY=unit|e2e runs one part.
set -uo pipefail

build=${1:-build}
only=${SL_ONLY:-all}
passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { # $1 = regex with one number group, from $log
	grep -oE "$1" "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'
}

if [ "$only" != e2e ]; then
	echo "== unit tests"
	for t in "$build"/tests/unit/test_* "$build"/tests/bpf/test_*; do
		[ -x "$t" ] || continue
		: >"$log"
		CMOCKA_MESSAGE_OUTPUT=stdout "$t" >"$log" 2>&1
		rc=$?
		p=$(count '\[  PASSED  \] [0-9]+')
		f=$(count '\[  FAILED  \] [0-9]+')
		s=$(count '\[  SKIPPED \] [0-9]+')
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			f=1 # crashed before cmocka could count
		fi
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
		printf '%-40s %3d passed, %d failed, %d skipped\n' "$(basename "$t")" "$p" "$f" "$s"
		[ "$rc" -eq 0 ] || cat "$log"
	done

	# The registry parser under libFuzzer, ASan and UBSan: any crash or finding fails.
	if [ -x "$build/fuzz/fuzz_registry" ]; then
		secs=${SL_FUZZ_SECONDS:-60}
		corpus=$(mktemp -d)
		cp tests/fuzz/corpus/registry/* "$corpus"/
		"$build/fuzz/fuzz_registry" -max_total_time="$secs" -max_len=4096 \
			-print_final_stats=1 "$corpus" >"$log" 2>&1
		rc=$?
		rm -rf "$corpus"
		runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
		if [ "$rc" -eq 0 ]; then
			passed=$((passed + 1))
			printf '%-40s   1 passed (%s inputs in %ss, no finding)\n' fuzz_registry "${runs:-?}" "$secs"
		else
			failed=$((failed + 1))
			printf '%-40s   0 passed, 1 failed\n' fuzz_registry
			tail -n 40 "$log"
		fi
	fi
fi

if [ "$only" != unit ]; then
	echo "== end-to-end tests"
	: >"$log"
	SLUICE_BUILD=$(realpath "$build") /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		-o console_output_style=classic tests/e2e tests/deploy 2>&1 | tee "$log"
	summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$log" | tail -n 1)
	p=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
	f=$(echo "$summary" | grep -oE '[0-9]+ (failed|errors?)' | grep -oE '[0-9]+' |
		awk '{s+=$1} END {print s+0}')
	s=$(echo "$summary" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)
	if [ -z "$summary" ]; then
		f=$((f + 1)) # pytest died before it could report
	fi
	passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0})) skipped=$((skipped + ${s:-0}))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
