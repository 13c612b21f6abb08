@testable import Compute
import Testing

/// The host-side choices of the CUDA decode path (no GPU needed): which attention and linear kernels a
/// step launches, and the table width that lets steps of one batch size share a recorded graph.
@Suite("CUDA decode host logic")
struct CUDADecodeHostTests {
    @Test("Attention picks the head-dimension class and output type, and every name it picks is compiled")
    func attentionKernelNames() {
        #expect(AttentionKernels.name(cache: .bf16, writing: .f32, headDim: 64) == "paged_attention_bf16_d64")
        #expect(AttentionKernels.name(cache: .bf16, writing: .bf16, headDim: 80) == "paged_attention_bf16_to_bf16_d128")
        #expect(AttentionKernels.name(cache: .f32, writing: .f16, headDim: 256) == "paged_attention_f32_to_f16_d256")
        for cache in [DType.f32, .bf16, .f16] {
            for output in [DType.f32, .bf16, .f16] {
                for headDim in [1, 64, 65, 128, 200, 256] {
                    #expect(AttentionKernels.functions.contains(AttentionKernels.name(cache: cache, writing: output, headDim: headDim)))
                }
            }
        }
    }

    @Test("Few (token, head) pairs get more warps per block; a prefill or a large batch gets 4")
    func attentionWarps() {
        #expect(AttentionKernels.warps(tokens: 1, heads: 12) == 16)
        #expect(AttentionKernels.warps(tokens: 64, heads: 12) == 8)
        #expect(AttentionKernels.warps(tokens: 256, heads: 12) == 4)
        #expect(AttentionKernels.warps(tokens: 4096, heads: 14) == 4)
    }

    @Test("Grouped attention: head-group class and chunks, splits only while the blocks are fewer than two per SM")
    func groupedAttentionLaunch() {
        // opt-125m: 12 heads of 64, no GQA. Batch 1 splits 16 ways; batch 256 not at all.
        let single = GroupedAttentionKernels.launch(tokens: 1, heads: 12, kvHeads: 12, headDim: 64, cache: .bf16, multiprocessors: 132)
        #expect(single == .init(name: "paged_attention_grouped_bf16_d64_g1", headsPerBlock: 1, headChunks: 1, splits: 16))
        let wide = GroupedAttentionKernels.launch(tokens: 256, heads: 12, kvHeads: 12, headDim: 64, cache: .bf16, multiprocessors: 132)
        #expect(wide.splits == 1)
        // qwen2-0.5b: 14 heads over 2 KV heads (7 a group: the class of 8, one chunk); 32 tokens → 64 blocks → 5 splits.
        let qwen = GroupedAttentionKernels.launch(tokens: 32, heads: 14, kvHeads: 2, headDim: 64, cache: .bf16, multiprocessors: 132)
        #expect(qwen == .init(name: "paged_attention_grouped_bf16_d64_g8", headsPerBlock: 8, headChunks: 1, splits: 5))
        // 16 heads on one KV head: two chunks of 8; head dim 80 runs in the 128 class.
        let big = GroupedAttentionKernels.launch(tokens: 4096, heads: 16, kvHeads: 1, headDim: 80, cache: .f16, multiprocessors: 132)
        #expect(big == .init(name: "paged_attention_grouped_f16_d128_g8", headsPerBlock: 8, headChunks: 2, splits: 1))
        #expect(GroupedAttentionKernels.launch(tokens: 1, heads: 8, kvHeads: 4, headDim: 128, cache: .f32, multiprocessors: 132).name
            == "paged_attention_grouped_f32_d128_g4")
        for cache in [DType.f32, .bf16, .f16] {
            for (heads, kvHeads) in [(1, 1), (4, 2), (14, 2), (32, 8), (28, 4), (64, 1)] {
                for headDim in [8, 64, 80, 128, 256] {
                    let plan = GroupedAttentionKernels.launch(tokens: 3, heads: heads, kvHeads: kvHeads, headDim: headDim, cache: cache,
                                                              multiprocessors: 132)
                    #expect(GroupedAttentionKernels.functions.contains(plan.name))
                    #expect(plan.headsPerBlock * plan.headChunks >= heads / kvHeads && plan.splits >= 1 && plan.splits <= 16)
                }
            }
        }
        // Head dims off the 8-grid, unaligned caches and an output of another type run the lane kernel.
        #expect(GroupedAttentionKernels.applies(headDim: 64, cache: .bf16, output: .bf16, addresses: [0x1000, 0x2000]))
        #expect(!GroupedAttentionKernels.applies(headDim: 60, cache: .bf16, output: .bf16, addresses: [0x1000]))
        #expect(!GroupedAttentionKernels.applies(headDim: 64, cache: .bf16, output: .f32, addresses: [0x1000]))
        #expect(!GroupedAttentionKernels.applies(headDim: 64, cache: .bf16, output: .bf16, addresses: [0x1008]))
        #expect(!GroupedAttentionKernels.applies(headDim: 512, cache: .f32, output: .f32, addresses: [0x1000]))
    }

    @Test("The greedy pick splits a row over blocks only for a few long rows")
    func greedyChunks() {
        #expect(SamplingKernels.greedyChunks(rows: 1, cols: 50272, multiprocessors: 132) == 32)
        #expect(SamplingKernels.greedyChunks(rows: 32, cols: 151936, multiprocessors: 132) == 9)
        #expect(SamplingKernels.greedyChunks(rows: 256, cols: 50272, multiprocessors: 132) == 1)
        #expect(SamplingKernels.greedyChunks(rows: 1, cols: 10, multiprocessors: 132) == 1)
        #expect(SamplingKernels.greedyChunks(rows: 2, cols: 3000, multiprocessors: 132) == 2)
        #expect(SamplingKernels.kernels.functions.contains("greedy_split_f32"))
    }

    @Test("The skinny linear kernel takes a few rows, K a multiple of 8 and 16-byte aligned rows")
    func skinnyLinearApplies() {
        let aligned: [UInt64] = [0x1000, 0x2000]
        #expect(SkinnyLinearKernels.applies(n: 1, k: 768, weightBytes: 77 << 20, addresses: aligned))
        #expect(SkinnyLinearKernels.applies(n: 32, k: 768, weightBytes: 4 << 20, addresses: aligned))
        #expect(!SkinnyLinearKernels.applies(n: 32, k: 768, weightBytes: 77 << 20, addresses: aligned))  // lm_head: cuBLASLt
        #expect(!SkinnyLinearKernels.applies(n: 33, k: 768, weightBytes: 1 << 20, addresses: aligned))
        #expect(!SkinnyLinearKernels.applies(n: 4, k: 1000 + 4, weightBytes: 1 << 20, addresses: aligned))
        #expect(!SkinnyLinearKernels.applies(n: 4, k: 768, weightBytes: 1 << 20, addresses: [0x1008, 0x2000]))
        #expect(SkinnyLinearKernels.functions.contains("skinny_linear_bf16_xbf16"))
        #expect(SkinnyLinearKernels.functions.contains("skinny_linear_bf16_xf32"))
    }

    @Test("The fused skinny kernels run where the skinny kernel would, for layers of one type; else nil (the unfused ops)")
    func fusedSkinnyKernels() {
        let aligned: [UInt64] = [0x1000, 0x2000, 0x3000, 0x4000]
        // opt-125m at batch 1: q, k, v (3 × 1.2 MB bf16) on bf16 operands; fc1 + ReLU into bf16.
        #expect(SkinnyLinearKernels.linearsKernel(n: 1, k: 768, x: .bf16, weights: [.bf16, .bf16, .bf16], weightBytes: 3 * 1_179_648,
                                                  addresses: aligned) == "skinny_linears_bf16_xbf16")
        #expect(SkinnyLinearKernels.linearActivationKernel(n: 1, k: 768, x: .bf16, weight: .bf16, output: .bf16, weightBytes: 4_718_592,
                                                           addresses: aligned) == "skinny_linear_act_bf16_xbf16_to_bf16")
        // qwen2-0.5b at batch 7: gate and up (2 × 8.7 MB bf16) on f32 operands into f32.
        #expect(SkinnyLinearKernels.gatedKernel(n: 7, k: 896, x: .f32, gate: .bf16, up: .bf16, output: .f32, weightBytes: 17_432_576,
                                                addresses: aligned) == "skinny_gated_bf16_xf32_to_f32")
        // Batch 32: the L2 limit counts the weights together (each block row reads all of them).
        #expect(SkinnyLinearKernels.linearsKernel(n: 32, k: 768, x: .f32, weights: [.f32, .f32], weightBytes: 12 << 20,
                                                  addresses: aligned) == "skinny_linears_f32_xf32")
        #expect(SkinnyLinearKernels.linearsKernel(n: 32, k: 768, x: .f32, weights: [.f32, .f32], weightBytes: 24 << 20,
                                                  addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.gatedKernel(n: 32, k: 896, x: .bf16, gate: .bf16, up: .bf16, output: .bf16, weightBytes: 17_432_576,
                                                addresses: aligned) == nil)
        // One layer is a plain linear; layers of mixed types, an x of a third type, a 16-bit output of
        // another type than the weights, unaligned rows, K off the 8-grid and too many rows run unfused.
        #expect(SkinnyLinearKernels.linearsKernel(n: 1, k: 768, x: .f32, weights: [.bf16], weightBytes: 1 << 20, addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.linearsKernel(n: 1, k: 768, x: .f32, weights: [.bf16, .f16], weightBytes: 1 << 20, addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.linearsKernel(n: 1, k: 768, x: .f16, weights: [.bf16, .bf16], weightBytes: 1 << 20, addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.linearActivationKernel(n: 1, k: 768, x: .f32, weight: .bf16, output: .f16, weightBytes: 1 << 20,
                                                           addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.linearActivationKernel(n: 1, k: 768, x: .f32, weight: .f32, output: .bf16, weightBytes: 1 << 20,
                                                           addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.gatedKernel(n: 1, k: 768, x: .f32, gate: .bf16, up: .f32, output: .f32, weightBytes: 1 << 20,
                                                addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.gatedKernel(n: 1, k: 768, x: .f32, gate: .bf16, up: .bf16, output: .f32, weightBytes: 1 << 20,
                                                addresses: [0x1000, 0x2008, 0x3000]) == nil)
        #expect(SkinnyLinearKernels.linearActivationKernel(n: 1, k: 764, x: .f32, weight: .bf16, output: .f32, weightBytes: 1 << 20,
                                                           addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.linearActivationKernel(n: 33, k: 768, x: .f32, weight: .bf16, output: .f32, weightBytes: 1 << 20,
                                                           addresses: aligned) == nil)
        #expect(SkinnyLinearKernels.linearsKernel(n: 1, k: 768, x: .f32, weights: [.i32, .i32], weightBytes: 1 << 20, addresses: aligned) == nil)
        // Every name the host can pick is compiled.
        for weight in [DType.f32, .bf16, .f16] {
            for x in [DType.f32, .bf16, .f16] {
                for output in [DType.f32, .bf16, .f16] {
                    let picked = [
                        SkinnyLinearKernels.linearsKernel(n: 2, k: 64, x: x, weights: [weight, weight, weight], weightBytes: 1024,
                                                          addresses: aligned),
                        SkinnyLinearKernels.linearActivationKernel(n: 2, k: 64, x: x, weight: weight, output: output, weightBytes: 1024,
                                                                   addresses: aligned),
                        SkinnyLinearKernels.gatedKernel(n: 2, k: 64, x: x, gate: weight, up: weight, output: output, weightBytes: 1024,
                                                        addresses: aligned),
                    ].compactMap { $0 }
                    #expect(picked.count == ((x == .f32 || x == weight) ? (output == .f32 || output == weight ? 3 : 1) : 0))
                    for name in picked { #expect(SkinnyLinearKernels.functions.contains(name), "\(name) is not compiled") }
                }
            }
        }
    }

    @Test("Block tables take the next power of two (at least 4) of the longest, so growing sequences keep a shape")
    func tableWidth() {
        func layout(_ lengths: [Int]) -> AttentionLayout {
            AttentionLayout(blockSize: 16, blockTables: lengths.map { [Int32](repeating: 0, count: $0) }, sequenceOfToken: [], positionOfToken: [])
        }
        #expect(CUDABackend.tableWidth(for: layout([1, 2])) == 4)
        #expect(CUDABackend.tableWidth(for: layout([9, 16])) == 16)
        #expect(CUDABackend.tableWidth(for: layout([17])) == 32)
    }
}
