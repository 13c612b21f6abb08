"""What PyTorch (cuBLAS) takes for the GEMMs of one opt-125m decode step, as a floor for our linear op.

Times F.linear at each decode shape in bf16 (bf16 out, as HF runs it) and with an f32 output (as our
engine's linear writes), inside a CUDA graph of 100 calls so launch cost is out. Also the paged-attention
floor: the bytes of K and V one decode step reads, at the GPU's copy bandwidth.

    python3 bench/probes/gemm_shapes.py
"""
import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
dev = "cuda"
hidden, ffn, vocab = 768, 3072, 50272


def graph_time(fn, reps=100):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(5):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / reps)
    return best


for rows in (1, 32, 256):
    total_bf16 = total_f32 = 0.0
    parts = []
    for name, o, k, count in (("q/k/v", hidden, hidden, 3), ("qkv fused", 3 * hidden, hidden, 0), ("out", hidden, hidden, 1),
                              ("fc1", ffn, hidden, 1), ("fc2", hidden, ffn, 1)):
        x = torch.randn(rows, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(o, k, device=dev, dtype=torch.bfloat16)
        b = torch.randn(o, device=dev, dtype=torch.bfloat16)
        t16 = graph_time(lambda: F.linear(x, w, b))
        try:  # torch ≥ 2.8: bf16 operands, f32 output (cuBLASLt), as our engine's linear
            t32 = graph_time(lambda: torch.mm(x, w.t(), out_dtype=torch.float32))
        except (TypeError, RuntimeError):
            t32 = float("nan")
        parts.append(f"{name} {t16:.2f}/{t32:.2f}")
        total_bf16 += count * t16
        total_f32 += count * t32
    x = torch.randn(rows, hidden, device=dev, dtype=torch.bfloat16)
    w = torch.randn(vocab, hidden, device=dev, dtype=torch.bfloat16)
    head = graph_time(lambda: F.linear(x, w))
    print(f"probe gemm rows={rows}: µs per call bf16-out/f32-out: " + ", ".join(parts) + f", lm_head {head:.2f}")
    print(f"probe gemm rows={rows}: 12 layers × (q,k,v,out,fc1,fc2) = {12 * total_bf16:.0f} µs bf16-out, "
          f"{12 * total_f32:.0f} µs f32-out; + lm_head {head:.0f} µs")

# Attention floor: K and V of every cached position, bf16, 12 layers, at the copy bandwidth of this GPU.
a = torch.empty(1 << 28, device=dev, dtype=torch.uint8)
b = torch.empty_like(a)
copy = graph_time(lambda: b.copy_(a), reps=10)
bandwidth = 2 * a.numel() / (copy * 1e-6)
print(f"probe copy: {bandwidth / 1e12:.2f} TB/s (read + write) device to device")
for rows, positions in ((1, 192), (32, 192), (256, 192)):
    kv = 12 * rows * positions * hidden * 2 * 2
    print(f"probe attention floor rows={rows} mean context {positions}: {kv / 1e6:.1f} MB of K/V a step, "
          f"{kv / bandwidth * 1e6:.0f} µs at that bandwidth")
