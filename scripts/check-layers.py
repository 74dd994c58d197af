#!/usr/bin/env python3
"""Checks that core/'s folders depend on each other one way only.

The rule lives in core/LAYERS: one line per folder, `folder: folders it may
include from` (the top level of core/ is `.`). This script reads every
`#include "..."` in core/, resolves it to the folder of the header it names
(relative to the including file first, then to core/, as the compiler's
-Icore does), and fails when
  - a file includes a header from a folder its own folder may not use,
  - an include names a header that does not exist,
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
    ROOT = os.path.abspath(sys.argv[2])
CORE = os.path.join(ROOT, "core")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


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
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            folder = folder_of(path)
            nfiles += 1
            if folder not in rule:
                problems.append("%s: folder core/%s is not in core/LAYERS" % (rel, folder))
                continue
            with open(path, errors="replace") as f:
                text = f.read()
            for m in INCLUDE.finditer(text):
                ninc += 1
                inc = m.group(1)
                line = text.count("\n", 0, m.start()) + 1
                target = None
                for base in (os.path.dirname(path), CORE):
                    cand = os.path.normpath(os.path.join(base, inc))
                    if os.path.isfile(cand):
                        target = cand
                        break
                if target is None:
                    problems.append('%s:%d: #include "%s" names no header under core/' % (rel, line, inc))
                    continue
                tf = folder_of(target)
                if tf == folder:
                    continue
                used.setdefault(folder, set()).add(tf)
                if tf not in rule.get(folder, set()):
                    problems.append('%s:%d: #include "%s": core/%s may not depend on core/%s (core/LAYERS)'
                                    % (rel, line, inc, folder, tf))
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
