@testable import Compute
import Testing

/// The host-side logic of the CUDA training ops (no GPU needed): AdamW's decay table, the memory
/// pool's size classes, the attention kernels' instantiation by head dimension.
@Suite("CUDA training host logic")
struct CUDATrainingHostTests {
    @Test("Decay ranges are clipped to the buffer, sorted and merged into (start, end) pairs")
    func decayTable() {
        #expect(CUDABackend.decayTable([5..<10, 0..<3, 8..<12, 20..<30, 3..<3], count: 25) == [0, 3, 5, 12, 20, 25])
        #expect(CUDABackend.decayTable([0..<4, 4..<8], count: 8) == [0, 8])
        #expect(CUDABackend.decayTable([], count: 8).isEmpty)
        #expect(CUDABackend.decayTable([10..<20], count: 8).isEmpty)
    }

    @Test("Pool size classes: 512 B steps up to 1 MiB, then 2 MiB steps; never below the request")
    func sizeClasses() {
        #expect(CUDAMemoryPool.sizeClass(0) == 512)
        #expect(CUDAMemoryPool.sizeClass(1) == 512)
        #expect(CUDAMemoryPool.sizeClass(513) == 1024)
        #expect(CUDAMemoryPool.sizeClass(1 << 20) == 1 << 20)
        #expect(CUDAMemoryPool.sizeClass((1 << 20) + 1) == 2 << 20)
        #expect(CUDAMemoryPool.sizeClass(3 << 20) == 4 << 20)
        for bytes in [7, 4096, 999_999, 5_000_001] { #expect(CUDAMemoryPool.sizeClass(bytes) >= bytes) }
    }

    @Test("Head dims up to 64 use the 2-dims-per-lane attention kernels, up to 128 the 4-dims ones")
    func attentionVariants() {
        #expect(TrainingAttentionKernels.variant(headDim: 16).name == "d64")
        #expect(TrainingAttentionKernels.variant(headDim: 64).name == "d64")
        #expect(TrainingAttentionKernels.variant(headDim: 80).name == "d128")
        #expect(TrainingAttentionKernels.variant(headDim: 128).name == "d128")
        for variant in ["d64", "d128"] {
            #expect(TrainingAttentionKernels.functions.contains("flash_attention_backward_dkdv_\(variant)_f32"))
        }
        // The backward kernels' shared memory fits the 227 KiB an H100/H200 block may have.
        #expect(TrainingAttentionKernels.variant(headDim: 128).dkdvSharedBytes <= 227 << 10)
    }

    @Test("Tensor-core attention: instances for head dims ≤ 64 and ≤ 128, shared memory within an sm_80 block's 163 KiB")
    func tensorCoreAttentionVariants() {
        #expect(TrainingAttentionTCKernels.variant(headDim: 40).name == "d64")
        #expect(TrainingAttentionTCKernels.variant(headDim: 64).name == "d64")
        #expect(TrainingAttentionTCKernels.variant(headDim: 80).name == "d128")
        #expect(TrainingAttentionTCKernels.variant(headDim: 128).name == "d128")
        for headDim in [64, 128] {
            let variant = TrainingAttentionTCKernels.variant(headDim: headDim)
            for kernel in ["forward", "backward_dq", "backward_dkdv"] {
                #expect(TrainingAttentionTCKernels.functions.contains("flash_attention_tc_\(kernel)_\(variant.name)"))
            }
            // Tiles of 64 rows of (head dim + 8) bf16: the forward holds Q, K, V.
            #expect(variant.forwardSharedBytes == 3 * 64 * 2 * (headDim + 8))
            #expect(max(variant.forwardSharedBytes, variant.dqSharedBytes, variant.dkdvSharedBytes) <= 163 << 10)
        }
    }

    @Test("COLOCATE_TRAINING_ATTENTION: unset or empty picks tensor cores; f32 and tc are read; anything else is an error")
    func trainingAttentionSetting() throws {
        #expect(try CUDATrainingAttention.fromEnvironment(nil) == .tensorCores)
        #expect(try CUDATrainingAttention.fromEnvironment("") == .tensorCores)
        #expect(try CUDATrainingAttention.fromEnvironment("f32") == .f32)
        #expect(try CUDATrainingAttention.fromEnvironment("tc") == .tensorCores)
        let error = #expect(throws: ComputeError.self) { try CUDATrainingAttention.fromEnvironment("bf16") }
        #expect(error?.description.contains("must be f32 or tc, not 'bf16'") == true)
    }
}
