#!/usr/bin/env python3
"""Writes the CUDA C of the training kernel families (with `skinny`: of the skinny linear kernels and the
elementwise ones they fuse), the raw strings of the Swift sources with the prelude, as one C++ file for
emu.h: the f16 inline PTX becomes _Float16 casts, dynamic shared memory a static buffer, and the norm
kernels get their f32 entry points."""
import pathlib, re, sys

kernels = pathlib.Path(__file__).resolve().parents[2] / "Sources/Compute/CUDA/Kernels"

def raw(name):
    return re.findall(r'#"""\n(.*?)"""#', (kernels / name).read_text(), re.S)

prelude = raw("CUDAKernelSource.swift")[0]
prelude = prelude.replace('asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));', "{ _Float16 h; memcpy(&h, &x.bits, 2); f = (float)h; }")
prelude = prelude.replace('asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));', "{ _Float16 h = (_Float16)x; memcpy(&r.bits, &h, 2); }")
prelude = prelude.replace('asm("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));', "v = *p;")
source = '#include "emu.h"\n' + prelude
if sys.argv[1:] == ["skinny"]:
    # The skinny linear kernels and the elementwise ones they fuse (skinny_kernels_test.cpp).
    rows = re.search(r"static let rows = (\d+)", (kernels / "SkinnyLinearKernels.swift").read_text()).group(1)
    source += f"#define SKINNY_ROWS {rows}\n" + "".join(raw("ElementwiseKernels.swift")) + raw("SkinnyLinearKernels.swift")[0]
    sys.stdout.write(source.replace("#pragma unroll", ""))
    sys.exit(0)
for family in ["TrainingKernelsElementwise", "TrainingKernelsNorm", "TrainingKernelsLogProbs", "TrainingKernelsAttention"]:
    source += raw(family + ".swift")[0]
for norm, args in [("layernorm", "x, w, dy, dx, partials, rows, hidden, eps"), ("rmsnorm", "x, w, dy, dx, partials, rows, hidden, eps")]:
    source += (f'extern "C" __global__ void {norm}_backward_f32(const float* x, const float* w, const float* dy, float* dx, '
               f'float* partials, int rows, int hidden, float eps) {{ {norm}_backward({args}); }}\n')
source = source.replace("extern __shared__ float smem[];", "float* smem = g_dynamic_smem;").replace("#pragma unroll", "")
sys.stdout.write(source)
