import os, sys, subprocess, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CG = os.environ.get("CG_DIR", ".")  # where the callgrind outputs TAG-WORKLOAD.out are
from cgparse import parse
from compare import disasm, is_check
wl, tag, binary = sys.argv[1:4]
S = parse(f"{CG}/{tag}-{wl}.out")
ins, nxt = disasm(binary)
sites = collections.Counter()
for (o, a), v in S[1].items():
    if o and o.split("/")[-1].startswith("colocate") and is_check(a, ins, nxt):
        sites[a] += v
top = sites.most_common(int(sys.argv[4]) if len(sys.argv) > 4 else 25)
lines = subprocess.run(["addr2line", "-i", "-e", binary] + [hex(a) for a, _ in top], capture_output=True, text=True).stdout.splitlines()
# -i gives several lines per address; re-run one by one for clarity
for a, v in top:
    loc = subprocess.run(["addr2line", "-i", "-e", binary, hex(a)], capture_output=True, text=True).stdout.split()
    loc = [l.split("/Sources/")[-1] for l in loc]
    print(f"{v:>10,}  {hex(a)}  {ins[a][:40]:40}  {' <- '.join(loc)}")
