#!/usr/bin/env python3
"""Parse a callgrind output written with --dump-instr=yes: self Ir per (object, function) and per
instruction address, and call counts per called function."""
import re, collections

def parse(path):
    names = {"ob": {}, "fn": {}, "fl": {}}
    ob = fn = None
    self_fn = collections.Counter()
    self_ins = collections.Counter()   # (ob, addr) -> Ir
    calls = collections.Counter()       # (ob, fn) -> number of calls into it
    fn_of_addr = {}
    last = 0
    skip_next = False
    cfn = cob = None
    def resolve(kind, text):
        m = re.match(r"\((\d+)\)(?: (.*))?$", text)
        if m:
            if m.group(2) is not None:
                names[kind][m.group(1)] = m.group(2)
            return names[kind][m.group(1)]
        return text
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*" or line.startswith("0x"):
                parts = line.split()
                p = parts[0]
                if p == "*":
                    addr = last
                elif p[0] in "+-":
                    addr = last + int(p, 16) if p[1:].startswith("0x") else last + int(p, 0)
                else:
                    addr = int(p, 16) if p.startswith("0x") else int(p)
                last = addr
                ir = int(parts[2]) if len(parts) > 2 else 0  # positions: instr line
                if skip_next:
                    skip_next = False
                    continue
                self_fn[(ob, fn)] += ir
                self_ins[(ob, addr)] += ir
                fn_of_addr[(ob, addr)] = fn
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = resolve("ob", value)
            elif key == "fn":
                fn = resolve("fn", value)
            elif key in ("fl", "fi", "fe"):
                resolve("fl", value)
            elif key == "cob":
                cob = resolve("ob", value)
            elif key == "cfn":
                cfn = resolve("fn", value)
            elif key in ("cfi", "cfl"):
                resolve("fl", value)
            elif key == "calls":
                calls[(cob or ob, cfn)] += int(value.split()[0])
                skip_next = True
                cob = None
    return self_fn, self_ins, calls, fn_of_addr
