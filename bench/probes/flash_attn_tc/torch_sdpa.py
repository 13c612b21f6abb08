"""Times PyTorch SDPA (flash, bf16, causal) forward and forward + backward for the harness's bench shapes,
and measures its error against f32 math SDPA, the yardstick for the tensor-core kernels' error."""
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

def rel_l2(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()

def error(B, T, H, D):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (1.5 * torch.randn(B, H, T, D, device="cuda", generator=g) for _ in range(2))
    v, do = (torch.randn(B, H, T, D, device="cuda", generator=g) for _ in range(2))
    outs = {}
    for name, dtype, backend in [("f32 math", torch.float32, SDPBackend.MATH), ("bf16 flash", torch.bfloat16, SDPBackend.FLASH_ATTENTION)]:
        x = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        with sdpa_kernel(backend):
            o = F.scaled_dot_product_attention(*x, is_causal=True)
        o.backward(do.to(dtype))
        outs[name] = [o] + [t.grad for t in x]
    errs = [rel_l2(a, b) for a, b in zip(outs["bf16 flash"], outs["f32 math"])]
    print(f"torch bf16 flash vs f32 math B {B} T {T} H {H} D {D}: relL2 out {errs[0]:.2e} dq {errs[1]:.2e} dk {errs[2]:.2e} dv {errs[3]:.2e}")

def bench(B, T, H, D):
    q, k, v, do = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    def fwd():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    def fwd_bwd():
        fwd().backward(do)
    def time(f, n=20):
        f(); torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(n): f()
        e.record(); torch.cuda.synchronize()
        return s.elapsed_time(e) / n
    tf, tfb = time(fwd), time(fwd_bwd)
    print(f"torch SDPA flash bf16 B {B} T {T} H {H} D {D}: fwd {tf:.3f} ms, fwd+bwd {tfb:.3f} ms, bwd ~{tfb - tf:.3f} ms")

print(torch.__version__, torch.cuda.get_device_name())
error(2, 512, 12, 64)
error(2, 512, 12, 128)
bench(16, 512, 12, 64)
bench(16, 512, 12, 128)
bench(4, 2048, 16, 128)
