import CCUDA

/// The general GEMM of training through cuBLASLt: `C = op(A) · op(B) + beta · C` on column-major
/// operands (see ``CUBLASLtGEMM`` for the row-major trick), A and B of one type (f32 or bf16/f16),
/// C f32, f32 accumulation. f32 operands use `CUBLAS_COMPUTE_32F_PEDANTIC` (no TF32, no reduced-precision
/// split-K reductions), falling back to `CUBLAS_COMPUTE_32F` if the heuristic offers nothing.
///
/// The two backward GEMMs of `y = x · Wᵀ` (row-major y [N, O], x [N, K], W [O, K]):
/// - `dx [N, K] = dy · W`: column-major `dxᵀ [K, N] = Wᵀ [K, O] · dyᵀ [O, N]`; A = W as stored (op N, lda K),
///   B = dy as stored (op N, ldb O).
/// - `dW [O, K] += dyᵀ · x`: column-major `dWᵀ [K, O] = xᵀ [K, N] · dy [N, O]`; A = x as stored (op N, lda K),
///   B = dy as stored, transposed (op T, ldb O), beta 1.
final class CUBLASLtTrainingGEMM {
    let lt: CUBLASLt
    let handle: cublasLtHandle_t
    let workspace: CUDABuffer

    /// `CUBLAS_COMPUTE_32F_PEDANTIC` (cublasComputeType_t).
    static let compute32FPedantic: Int32 = 69

    struct Key: Hashable {
        var transA, transB: Bool
        var m, n, k, lda, ldb, ldc: Int
        var abType: Int32
        var alignments: [UInt32]
    }

    private var plans: [Key: CUBLASLtGEMM.Plan] = [:]

    init(base: CUBLASLtGEMM) {
        lt = base.lt
        handle = base.handle
        workspace = base.workspace
    }

    /// C[m, n] (f32, column-major, ldc) = op(A)[m, k] · op(B)[k, n] + beta · C.
    func matmul(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int,
                c: UInt64, ldc: Int, abType: DType, beta: Float, stream: CUstream?) throws(CUDAError) {
        let key = Key(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
                      abType: CUBLASLtGEMM.cudaType(abType), alignments: [a, b, c].map(CUBLASLtGEMM.alignment))
        let plan: CUBLASLtGEMM.Plan
        if let cached = plans[key] {
            plan = cached
        } else {
            plan = try makePlan(key, compute: abType == .f32 ? Self.compute32FPedantic : CUBLAS_COMPUTE_32F, fallback: true)
            plans[key] = plan
        }
        var alpha: Float = 1
        var beta = beta
        try CUDAError.check(lt.cublasLtMatmul(handle, plan.desc, &alpha,
                                              UnsafeRawPointer(bitPattern: UInt(a)), plan.a,
                                              UnsafeRawPointer(bitPattern: UInt(b)), plan.b, &beta,
                                              UnsafeRawPointer(bitPattern: UInt(c)), plan.c,
                                              UnsafeMutableRawPointer(bitPattern: UInt(c)), plan.c,
                                              &plan.algo, UnsafeMutableRawPointer(bitPattern: UInt(workspace.deviceAddress)),
                                              workspace.byteCount, stream), "cublasLtMatmul", in: .cublasLt)
    }

    private func makePlan(_ key: Key, compute: Int32, fallback: Bool) throws(CUDAError) -> CUBLASLtGEMM.Plan {
        let plan = CUBLASLtGEMM.Plan(lt: lt)
        try CUDAError.check(lt.cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F), "cublasLtMatmulDescCreate", in: .cublasLt)
        var opA = key.transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = key.transB ? CUBLAS_OP_T : CUBLAS_OP_N
        try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, 4),
                            "cublasLtMatmulDescSetAttribute", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, 4),
                            "cublasLtMatmulDescSetAttribute", in: .cublasLt)
        // A layout as stored: [m, k] (op N) or [k, m] (op T); B: [k, n] or [n, k].
        let (aRows, aCols) = key.transA ? (key.k, key.m) : (key.m, key.k)
        let (bRows, bCols) = key.transB ? (key.n, key.k) : (key.k, key.n)
        try CUDAError.check(lt.cublasLtMatrixLayoutCreate(&plan.a, key.abType, UInt64(aRows), UInt64(aCols), Int64(key.lda)),
                            "cublasLtMatrixLayoutCreate", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatrixLayoutCreate(&plan.b, key.abType, UInt64(bRows), UInt64(bCols), Int64(key.ldb)),
                            "cublasLtMatrixLayoutCreate", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, UInt64(key.m), UInt64(key.n), Int64(key.ldc)),
                            "cublasLtMatrixLayoutCreate", in: .cublasLt)

        var preference: cublasLtMatmulPreference_t?
        try CUDAError.check(lt.cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate", in: .cublasLt)
        defer { _ = lt.cublasLtMatmulPreferenceDestroy(preference) }
        var workspaceBytes = UInt64(workspace.byteCount)
        try CUDAError.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspaceBytes, 8),
                            "cublasLtMatmulPreferenceSetAttribute", in: .cublasLt)
        let attributes = [CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES]
        let alignments = [key.alignments[0], key.alignments[1], key.alignments[2], key.alignments[2]]
        for (attribute, alignment) in zip(attributes, alignments) {
            var value = alignment
            try CUDAError.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, 4),
                                "cublasLtMatmulPreferenceSetAttribute", in: .cublasLt)
        }
        var result = cublasLtMatmulHeuristicResult_t()
        var returned: Int32 = 0
        let status = lt.cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, preference, 1, &result, &returned)
        if (status != 0 || returned == 0) && fallback && compute != CUBLAS_COMPUTE_32F {
            return try makePlan(key, compute: CUBLAS_COMPUTE_32F, fallback: false)
        }
        try CUDAError.check(status, "cublasLtMatmulAlgoGetHeuristic", in: .cublasLt)
        guard returned > 0 else {
            throw CUDAError(library: .cublasLt, code: CUDAError.cublasNotSupported.code, api: "cublasLtMatmulAlgoGetHeuristic",
                            message: "no cuBLASLt algorithm for op\(key.transA ? "T" : "N")(A) [\(key.m), \(key.k)] × op\(key.transB ? "T" : "N")(B) [\(key.k), \(key.n)] in type \(key.abType)")
        }
        plan.algo = result.algo
        return plan
    }
}
