#!/usr/bin/env python3
"""Reports import cycles between the modules (files) of each crate.

An edge A -> B is a path in A's code that names an item of module B (`use crate::b::X`,
`super::X`, `child::X`, `crate::b::f()`); method calls are not edges. Exits 1 if any crate has a
cycle, naming the modules in it. Used by scripts/check.
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+|[a-z_][a-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def modules(src: Path):
    """Maps module paths (tuples) to files."""
    out = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("lib", "main"):
            parts = parts[:-1]
        elif parts[-1] == "mod":
            parts = parts[:-1]
        out[tuple(parts)] = f
    return out


def strip(code: str) -> str:
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    # An indented `use super::` belongs to an inline module (`mod defaults { use super::*; }`):
    # its parent is this file.
    code = re.sub(r"\n[ \t]+use super::[^;]*;", "\n", code)
    # Test modules may import anything of their parent.
    i = code.find("#[cfg(test)]")
    return code if i < 0 else code[:i]


def resolve(mods, here, path):
    segs = path.split("::")
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here)
        rest = segs
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
        base = tuple(base)
    else:
        # A child module, or something outside the crate.
        if here + (segs[0],) not in mods:
            return None
        base, rest = here, segs
    best = base
    cur = base
    for s in rest:
        cur = cur + (s,)
        if cur in mods:
            best = cur
        else:
            break
    return best


def cycles(src: Path):
    mods = modules(src)
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        code = strip(f.read_text())
        # `use a::{b, c::d}` groups: expand the prefix for each member.
        for use in re.finditer(r"\buse\s+([^;]+);", code):
            text = re.sub(r"\s+", "", use.group(1))
            stack = [("", text)]
            while stack:
                prefix, t = stack.pop()
                if "{" in t:
                    head, body = t.split("{", 1)
                    body = body.rsplit("}", 1)[0]
                    depth, cur, items = 0, "", []
                    for ch in body:
                        if ch == "," and depth == 0:
                            items.append(cur)
                            cur = ""
                            continue
                        depth += ch == "{"
                        depth -= ch == "}"
                        cur += ch
                    items.append(cur)
                    for it in items:
                        if it:
                            stack.append((prefix + head, it))
                else:
                    full = (prefix + t).split(" as ")[0].split("as")[0] if False else prefix + t
                    full = re.sub(r"as[A-Za-z_]+$", "", full)
                    target = resolve(mods, m, full.rstrip(":"))
                    if target is not None and target != m:
                        graph[m].add(target)
        for p in PATH.finditer(code):
            target = resolve(mods, m, p.group(1))
            if target is not None and target != m:
                graph[m].add(target)
    # Tarjan's strongly connected components.
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    root = Path(__file__).resolve().parent.parent
    bad = False
    for src in [root / "src", *sorted(p / "src" for p in root.iterdir() if (p / "Cargo.toml").exists() and (p / "src").is_dir() and p != root)]:
        for comp in cycles(src):
            bad = True
            names = ", ".join(sorted("::".join(c) or "(crate root)" for c in comp))
            print(f"{src.parent.name}: import cycle between modules: {names}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
