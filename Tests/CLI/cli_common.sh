# Helpers shared by the single-process command-line test scripts (sourced after they set $keel): a scratch
# directory $work, removed on exit; pass/fail counting; and checks of exit status, error lines and files.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -f "$work/err" ] && sed 's/^/    /' "$work/err" | head -5; }

# expect_error NAME FRAGMENT COMMAND...: non-zero exit, exactly one "Error: …" line, which contains
# FRAGMENT and is the last line (progress lines may come before it), and no crash report.
expect_error() {
    local name=$1 fragment=$2
    shift 2
    "$@" >"$work/out" 2>"$work/err"
    local status=$?
    local lines
    lines=$(grep -c "^Error: " "$work/err")
    if [ "$status" -ne 0 ] && tail -1 "$work/err" | grep -q -- "^Error: .*$fragment" && [ "$lines" -eq 1 ] \
        && ! grep -q "Fatal error" "$work/err"; then
        pass "$name"
    else
        fail "$name (exit $status, $lines error lines, wanted '$fragment')"
    fi
}

# expect_ok NAME COMMAND...: zero exit.
expect_ok() {
    local name=$1
    shift
    if "$@" >"$work/out" 2>"$work/err"; then pass "$name"; else fail "$name (exit $?)"; fi
}

# check NAME PYTHON_EXPRESSION ARGS...: the expression (over sys.argv) is true.
check() {
    local name=$1 expression=$2
    shift 2
    if python3 -c "import json, sys; assert $expression" "$@" 2>"$work/err"; then pass "$name"; else fail "$name"; fi
}

# usage NAME FRAGMENT COMMAND...: an option the parser refuses — exit 64 and one "Error: …" line with FRAGMENT.
usage() {
    local name=$1 fragment=$2
    shift 2
    "$@" >"$work/out" 2>"$work/err"
    local status=$?
    if [ "$status" -eq 64 ] && [ "$(grep -c '^Error: ' "$work/err")" -eq 1 ] && grep -q -- "^Error: .*$fragment" "$work/err"; then
        pass "$name"
    else
        fail "$name (exit $status, wanted '$fragment')"
    fi
}
