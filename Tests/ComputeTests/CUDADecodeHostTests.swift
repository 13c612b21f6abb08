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
