#!/bin/bash
# The layer check must fail on a tree that breaks the rule, or it proves
# nothing. Builds three small trees: a clean one (must pass), one where a lower
# folder includes a higher one (must fail and name the file), and one whose
# includes form a circle (must fail and say so). Exit 0 when all three behave.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mk() {  # $1 = tree; then pairs: file "content"
    local t=$1; shift
    mkdir -p "$t/core"
    printf 'low:\nhigh: low\n.: low high\n' >"$t/core/LAYERS"
    while [ $# -gt 0 ]; do mkdir -p "$t/core/$(dirname "$1")"; printf '%s\n' "$2" >"$t/core/$1"; shift 2; done
}
mk "$tmp/ok" low/a.h '' high/b.h '#include "low/a.h"' main.c '#include "high/b.h"'
mk "$tmp/up" low/a.h '#include "high/b.h"' high/b.h ''
mk "$tmp/circle" low/a.h '' high/b.h '#include "low/a.h"'
printf 'low: high\nhigh: low\n.: low high\n' >"$tmp/circle/core/LAYERS"
fail=0
scripts/check-layers.py --root "$tmp/ok" >/dev/null || { echo "clean tree rejected"; fail=1; }
out=$(scripts/check-layers.py --root "$tmp/up") && { echo "upward include accepted"; fail=1; }
echo "$out" | grep -q 'core/low/a.h:1: #include "high/b.h": core/low may not depend on core/high' ||
    { echo "upward include not named: $out"; fail=1; }
out=$(scripts/check-layers.py --root "$tmp/circle") && { echo "circle accepted"; fail=1; }
echo "$out" | grep -q 'circle' || { echo "circle not reported: $out"; fail=1; }
exit $fail
