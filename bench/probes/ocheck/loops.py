#!/usr/bin/env python3
"""Disassemble a function in two binaries, find its innermost loops (a backward branch whose
range holds no other backward branch), and compare them instruction by instruction (addresses and
jump targets normalised). Also counts trap sites (ud2) and overflow branches (jo/jno) per function.
usage: loops.py BIN_A BIN_B SYMBOL_SUBSTRING [...]"""
import re, subprocess, sys

def symbols(binary):
    out = subprocess.run(["nm", "-S", binary], capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return syms

def disassemble(binary, start, size):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--no-addresses" if False else "-w",
                          f"--start-address={start:#x}", f"--stop-address={start + size:#x}", binary],
                         capture_output=True, text=True).stdout
    insns = []
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)$", line)
        if m:
            text = re.sub(r"\s+", " ", m.group(2).split("#")[0]).strip()
            insns.append((int(m.group(1), 16), text))
    return insns

JUMP = re.compile(r"^(j\w+) ([0-9a-f]+)\b")

def loops(insns):
    backs = []
    for i, (addr, text) in enumerate(insns):
        m = JUMP.match(text)
        if m and int(m.group(2), 16) <= addr:
            backs.append((int(m.group(2), 16), addr))
    inner = [(s, e) for (s, e) in backs if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for (s2, e2) in backs)]
    return inner

def normalise(insns, start, end):
    body = [(a, t) for (a, t) in insns if start <= a <= end]
    out = []
    for a, t in body:
        m = JUMP.match(t)
        if m:
            t = f"{m.group(1)} {'.+' if int(m.group(2), 16) > a else '.-'}{abs(int(m.group(2), 16) - a) and ''}"
            t = t.strip()
        t = re.sub(r"<[^>]*>", "", t)
        t = re.sub(r"0x[0-9a-f]+\(%rip\)", "RIP", t)
        out.append(t)
    return out

def main():
    a_bin, b_bin = sys.argv[1], sys.argv[2]
    sa, sb = symbols(a_bin), symbols(b_bin)
    for pattern in sys.argv[3:]:
        names = sorted(n for n in sa if pattern in n)
        for name in names:
            if name not in sb:
                print(f"== {name}: not in {b_bin}"); continue
            ia, ib = disassemble(a_bin, *sa[name]), disassemble(b_bin, *sb[name])
            def traps(ins): return sum(t.startswith("ud2") for _, t in ins), sum(bool(re.match(r"jn?o ", t)) for _, t in ins)
            la, lb = loops(ia), loops(ib)
            print(f"== {subprocess.run(['swift','demangle','--simplified','--compact',name],capture_output=True,text=True).stdout.strip()[:140]}")
            print(f"   size {sa[name][1]} vs {sb[name][1]} bytes; instructions {len(ia)} vs {len(ib)}; ud2 {traps(ia)[0]} vs {traps(ib)[0]}; jo {traps(ia)[1]} vs {traps(ib)[1]}; innermost loops {len(la)} vs {len(lb)}")
            def trapjumps(ins, s, e):
                at = {a: k for k, (a, _) in enumerate(ins)}
                n = 0
                for a, t in ins:
                    m = JUMP.match(t)
                    if s <= a <= e and m and int(m.group(2), 16) in at:
                        k = at[int(m.group(2), 16)]
                        if any(x.startswith("ud2") for _, x in ins[k:k + 4]) or re.match(r"jn?o", t):
                            n += 1
                return n
            print(f"   branches to a trap inside innermost loops: -O {[trapjumps(ia, s, e) for s, e in la]}, -Ounchecked {[trapjumps(ib, s, e) for s, e in lb]}")
            na = [normalise(ia, s, e) for s, e in la]
            nb = [normalise(ib, s, e) for s, e in lb]
            same = [x for x in na if x in nb]
            print(f"   innermost loops identical (as normalised instruction lists): {len(same)} of {len(na)} (-O) / {len(nb)} (-Ounchecked)")
            for x in na:
                if x not in nb:
                    checks = [t for t in x if re.match(r"(jn?o|ud2)", t)]
                    print(f"   -O loop of {len(x)} insns has no twin in -Ounchecked; overflow branches/traps inside: {checks}")
                    if "-v" in sys.argv[0:1] or len(x) <= 60:
                        print("      " + " ; ".join(x))
            for x in nb:
                if x not in na:
                    print(f"   -Ounchecked loop of {len(x)} insns has no twin in -O")
                    if len(x) <= 60:
                        print("      " + " ; ".join(x))
if __name__ == "__main__":
    main()
