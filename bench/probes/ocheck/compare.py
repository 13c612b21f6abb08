#!/usr/bin/env python3
"""Compare two callgrind runs (-O vs -Ounchecked) of one workload: totals, colocate's own code, the
hottest functions (self Ir, calls, Ir per call), and the executed overflow/bounds-check branches."""
import os, re, subprocess, sys, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CG = os.environ.get("CG_DIR", ".")  # where the callgrind outputs TAG-WORKLOAD.out are
from cgparse import parse

def disasm(binary):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-w", binary], capture_output=True, text=True).stdout
    ins = {}
    order = []
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)$", line)
        if m:
            a = int(m.group(1), 16)
            ins[a] = re.sub(r"\s+", " ", m.group(2)).strip()
            order.append(a)
    nxt = {order[k]: order[k + 1:k + 4] for k in range(len(order) - 3)}
    return ins, nxt

def is_check(a, ins, nxt):
    t = ins.get(a, "")
    if re.match(r"jn?o ", t):
        return True
    m = re.match(r"(j\w+) ([0-9a-f]+)\b", t)
    if m and m.group(1) != "jmp":
        tgt = int(m.group(2), 16)
        if ins.get(tgt, "").startswith("ud2"):
            return True
        if any(ins.get(x, "").startswith("ud2") for x in nxt.get(tgt, [])[:1]):
            return True
    return False

def demangle(names):
    out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names), capture_output=True, text=True).stdout
    return out.splitlines()

def main():
    wl, a_tag, b_tag, a_bin, b_bin = sys.argv[1:6]
    A = parse(f"{CG}/{a_tag}-{wl}.out")
    B = parse(f"{CG}/{b_tag}-{wl}.out")
    ta, tb = sum(A[0].values()), sum(B[0].values())
    own = lambda S: sum(v for (ob, fn), v in S[0].items() if ob and ob.split("/")[-1].startswith("colocate"))
    oa, ob_ = own(A), own(B)
    print(f"workload {wl}: total Ir  -O {ta:,}  -Ounchecked {tb:,}  ratio {ta / tb:.4f}")
    print(f"  colocate binary's own code: -O {oa:,}  -Ounchecked {ob_:,}  ratio {oa / ob_:.4f}  ({100 * oa / ta:.1f}% of -O total)")
    # functions keyed by name (object basename dropped so that colocate-O / colocate-Ou match)
    fa = collections.Counter(); fb = collections.Counter()
    ca = collections.Counter(); cb = collections.Counter()
    for (o, f), v in A[0].items(): fa[f] += v
    for (o, f), v in B[0].items(): fb[f] += v
    for (o, f), v in A[2].items(): ca[f] += v
    for (o, f), v in B[2].items(): cb[f] += v
    top = [f for f, _ in fa.most_common(14)]
    dm = demangle(top)
    print(f"  {'self Ir -O':>14} {'-Ounchecked':>14} {'ratio':>7} {'calls -O/-Ou':>15} {'Ir/call ratio':>13}  function")
    for f, d in zip(top, dm):
        r = fa[f] / fb[f] if fb[f] else float("nan")
        pc = (fa[f] / ca[f]) / (fb[f] / cb[f]) if ca[f] and cb[f] and fb[f] else float("nan")
        print(f"  {fa[f]:>14,} {fb[f]:>14,} {r:>7.4f} {str(ca[f]) + '/' + str(cb[f]):>15} {pc:>13.4f}  {d[:100]}")
    # executed check branches in colocate's own code
    for tag, S, binary in ((a_tag, A, a_bin), (b_tag, B, b_bin)):
        ins, nxt = disasm(binary)
        per_fn = collections.Counter()
        total_checks = 0
        for (o, addr), v in S[1].items():
            if o and o.split("/")[-1].startswith("colocate") and is_check(addr, ins, nxt):
                total_checks += v
                per_fn[S[3][(o, addr)]] += v
        own_total = own(S)
        print(f"  {tag}: executed check branches (jo/jno, or a conditional jump to ud2) in colocate's code: {total_checks:,} = {100 * total_checks / own_total:.3f}% of its Ir")
        names = [f for f, _ in per_fn.most_common(6)]
        for f, d in zip(names, demangle(names)):
            print(f"      {per_fn[f]:>12,} ({100 * per_fn[f] / max(1, fa[f] if tag == a_tag else fb[f]):.2f}% of the function)  {d[:110]}")

if __name__ == "__main__":
    main()
