/// The CPU kernels behind `CPUBackend`, at the level of pointers and sizes: no tensors, no shape
/// checks. Every function is synchronous and parallelises itself over `Parallel.width` threads when
/// the problem is large enough to pay for it. Activations are f32; weights, tables and norm
/// parameters may be f32, bf16 or f16 (widened to f32 block by block), accumulation is in f32.
public enum CPUKernels {}
