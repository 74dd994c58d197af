#!/bin/bash
# The layer check must fail on a tree that breaks the rule, or it proves
# nothing. Builds small trees: a clean one (must pass), one where a lower
# folder includes a higher one (must fail and name the file), one whose
# includes form a circle (must fail and say so), and one per way of spelling
# an upward include that the compiler accepts (angle brackets, a macro, a
# comment inside the directive, the digraph %:, a line splice, a .inc file,
# a symlink): each must fail. Exit 0 when all behave.
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
# Each a low/a.c the compiler reads as including high/b.h; must be refused.
evade() {  # $1 = case name, $2 = file, $3 = its content; more pairs may follow
    local c=$1; shift
    mk "$tmp/$c" high/b.h '' "$@"
    out=$(scripts/check-layers.py --root "$tmp/$c") && { echo "$c: upward include accepted"; fail=1; }
    echo "$out" | grep -q 'core/low may not depend on core/high\|computed include' ||
        { echo "$c: not reported: $out"; fail=1; }
}
evade angle low/a.c '#include <high/b.h>'
evade macro low/a.c "$(printf '#define H "high/b.h"\n#include H')"
evade comment low/a.c '#/* x */include "high/b.h"'
evade digraph low/a.c '%:include "high/b.h"'
evade splice low/a.c "$(printf '#inc\\\nlude "high/b.h"')"
evade dotdot low/a.c '#include "../high/b.h"'
evade inc low/a.c '#include "x.inc"' low/x.inc '#include "../high/b.h"'
mk "$tmp/link" high/b.h '' low/a.c '#include "b.h"'
ln -s ../high/b.h "$tmp/link/core/low/b.h"
scripts/check-layers.py --root "$tmp/link" >/dev/null && { echo "link: upward include through a symlink accepted"; fail=1; }
# a commented-out include is no include
mk "$tmp/commented" high/b.h '' low/a.c '// #include "high/b.h"'
scripts/check-layers.py --root "$tmp/commented" >/dev/null || { echo "commented include rejected"; fail=1; }
exit $fail
