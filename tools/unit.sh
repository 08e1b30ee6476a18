#!/bin/sh
# Run each unit test binary in its own process with its own timeout, so a hang fails one named
# test and not the suite.  Prints the plain closing line "N passed, N failed".
passed=0
failed=0
for test in "$@"; do
    if timeout 60 "$test" >"$test.log" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $test"
    else
        failed=$((failed + 1))
        echo "FAIL $test"
        sed 's/^/    /' "$test.log"
    fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
