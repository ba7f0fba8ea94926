#!/usr/bin/env bash
# Command-line tests: runs every tests/cli_*.sh with the build directory as $1. Each script prints
# one "PASS <what>" or "FAIL <what>: <why>" line per check; this driver counts them and ends on
# "N passed, N failed" (exit 1 on any failure, or if a script dies without reporting).
# Run from the repository root: tests/test_cli.sh build
set -u
BUILD=${1:-build}
pass=0; fail=0
for t in tests/cli_*.sh; do
  [ -f "$t" ] || continue
  out=$(bash "$t" "$BUILD" 2>&1); rc=$?
  printf '%s\n' "$out"
  p=$(printf '%s\n' "$out" | grep -c '^PASS ') || true
  f=$(printf '%s\n' "$out" | grep -c '^FAIL ') || true
  pass=$((pass + p)); fail=$((fail + f))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $t exited with status $rc without reporting a failed check"; fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
