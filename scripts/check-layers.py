#!/usr/bin/env python3
"""Checks that core/'s folders depend on each other one way only.

The rule lives in core/LAYERS: one line per folder, `folder: folders it may
include from` (the top level of core/ is `.`). This script reads every
include directive in every file under core/ (not only .c and .h: a `.inc`
file may be included too) as the preprocessor sees it: line splices joined,
comments blanked, `%:` read as `#`, `#include`, `#include_next` and `#import`
with "..." or <...>. It resolves the header (a "..." one relative to the
including file first, then to core/, as the compiler's -Icore does; a <...>
one to core/ only, else it is a system header), following symlinks, to its
folder, and fails when
  - a file includes a header from a folder its own folder may not use,
  - an include names a header that does not exist,
  - an include is computed (a macro), which this check cannot follow,
  - a folder under core/ is not listed in core/LAYERS, or
  - the folders form a circle, either in the rule itself or in the includes
    that are actually there.
Exit status 0 when the tree follows the rule; 1 with one line per problem.
`--root DIR` checks DIR/core instead of this project's (the self-test uses it)."""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if len(sys.argv) == 3 and sys.argv[1] == "--root":
    ROOT = sys.argv[2]
ROOT = os.path.realpath(ROOT)
CORE = os.path.realpath(os.path.join(ROOT, "core"))
DIRECTIVE = re.compile(r'^[ \t]*#[ \t]*(include|include_next|import)\b[ \t]*(.*)$', re.M)
OPERAND = re.compile(r'"([^"]+)"|<([^>]+)>')
# A comment, or a literal (kept: a comment marker inside one is not one).
LEXEME = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def preprocessed(text):
    """text as the preprocessor's directives see it: line splices joined
    (each spliced line's newline kept at the end, so line numbers hold
    at the directive), comments blanked, digraph `%:` as `#`."""
    text = text.replace("??=", "#").replace("%:", "#")
    out, lines = [], text.split("\n")
    held = 0
    for line in lines:
        if line.endswith("\\"):
            out.append(line[:-1])
            held += 1
            continue
        out.append(line + "\n" * (held + 1))
        held = 0
    text = "".join(out)

    def blank(m):
        t = m.group(0)
        return t if t[0] in "\"'" else " " + "\n" * t.count("\n")
    return LEXEME.sub(blank, text)


def read_rule(path):
    rule = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if ":" not in line:
                sys.exit("%s:%d: expected 'folder: deps...'" % (path, n))
            folder, deps = line.split(":", 1)
            rule[folder.strip()] = set(deps.split())
    return rule


def folder_of(path):
    rel = os.path.relpath(os.path.dirname(path), CORE)
    return "." if rel == "." else rel


def find_cycle(graph):
    """A list of nodes forming a circle in graph {node: set(nodes)}, or None."""
    state = {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m, stack)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n, [])
            if c:
                return c
    return None


def main():
    rule = read_rule(os.path.join(CORE, "LAYERS"))
    problems = []
    for folder, deps in sorted(rule.items()):
        for d in sorted(deps - set(rule)):
            problems.append("core/LAYERS: %s may use %s, which is not a listed folder" % (folder, d))
    c = find_cycle({f: d - {f} for f, d in rule.items()})
    if c:
        problems.append("core/LAYERS: the rule itself is a circle: %s" % " -> ".join(c))

    used = {}
    nfiles = ninc = 0
    for dirpath, dirnames, filenames in os.walk(CORE):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".md") or (name == "LAYERS" and dirpath == CORE):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            folder = folder_of(path)
            nfiles += 1
            if folder not in rule:
                problems.append("%s: folder core/%s is not in core/LAYERS" % (rel, folder))
                continue
            with open(path, errors="replace") as f:
                text = preprocessed(f.read())
            for m in DIRECTIVE.finditer(text):
                ninc += 1
                line = text.count("\n", 0, m.start()) + 1
                op = OPERAND.match(m.group(2))
                if not op:
                    problems.append("%s:%d: #%s %s: a computed include, which this check cannot follow"
                                    % (rel, line, m.group(1), m.group(2).strip()))
                    continue
                inc = op.group(1) or op.group(2)
                bases = (os.path.dirname(path), CORE) if op.group(1) else (CORE,)
                target = None
                for base in bases:
                    cand = os.path.join(base, inc)
                    if os.path.isfile(cand):
                        target = os.path.realpath(cand)
                        break
                if target is None:
                    if op.group(2):
                        continue  # a system header
                    problems.append('%s:%d: #include "%s" names no header under core/' % (rel, line, inc))
                    continue
                tf = folder_of(target)
                if tf == folder:
                    continue
                used.setdefault(folder, set()).add(tf)
                if tf not in rule.get(folder, set()):
                    problems.append('%s:%d: #%s %s: core/%s may not depend on core/%s (core/LAYERS)'
                                    % (rel, line, m.group(1), op.group(0), folder, tf))
    c = find_cycle(used)
    if c:
        problems.append("the includes form a circle between folders: %s" % " -> ".join(c))
    for p in problems:
        print(p)
    print("check-layers: %d files, %d includes, %d folders, %d problems"
          % (nfiles, ninc, len(rule), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
