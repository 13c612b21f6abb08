import CCUDA

/// `y = x · Wᵀ (+ y)` through cuBLASLt for row-major tensors, on one device and stream.
///
/// Row-major trick: cuBLASLt is column-major, and a row-major `[r, c]` matrix is a column-major
/// `[c, r]` one. With y `[N, O]`, x `[N, K]`, W `[O, K]` (Hugging Face layout) we compute the
/// column-major `yᵀ [O, N] = W [K, O]ᵀ · xᵀ [K, N]`: A = W with op T, B = x with op N, m = O, n = N, k = K.
///
/// Types: A and B share a type (f32, bf16 or f16), C and D are f32, compute and scale types are f32
/// (`CUBLAS_COMPUTE_32F`, no TF32). The backend converts activations to the weight's type before a
/// bf16/f16 GEMM (see ``CUDABackend``). A plan (descriptors and the heuristic's algorithm) is made once
/// per shape, type and pointer alignment, and reused.
final class CUBLASLtGEMM {
    let lt: CUBLASLt
    let device: CUDADevice
    let handle: cublasLtHandle_t
    let workspace: CUDABuffer

    struct Key: Hashable {
        var m, n, k: Int
        var abType: Int32
        var alignments: [UInt32]
        /// The bias vector's type when the plan adds it in the epilogue (CUBLASLT_EPILOGUE_BIAS).
        var biasType: Int32? = nil
    }

    final class Plan {
        let lt: CUBLASLt
        var desc: cublasLtMatmulDesc_t?
        var a: cublasLtMatrixLayout_t?
        var b: cublasLtMatrixLayout_t?
        var c: cublasLtMatrixLayout_t?
        var algo = cublasLtMatmulAlgo_t()
        /// False for a bias plan no algorithm supports (the caller adds the bias another way).
        var supported = true
        init(lt: CUBLASLt) { self.lt = lt }
        deinit {
            if let desc { _ = lt.cublasLtMatmulDescDestroy(desc) }
            for layout in [a, b, c] { if let layout { _ = lt.cublasLtMatrixLayoutDestroy(layout) } }
        }
    }
    private var plans: [Key: Plan] = [:]

    /// Call with the device's context current (on its thread).
    init(device: CUDADevice, workspace: CUDABuffer) throws(CUDAError) {
        lt = try CUBLASLt.load()
        self.device = device
        self.workspace = workspace
        var h: cublasLtHandle_t?
        try CUDAError.check(lt.cublasLtCreate(&h), "cublasLtCreate", in: .cublasLt)
        handle = h!
    }

    deinit {
        plans.removeAll()
        let (lt, handle) = (lt, handle)
        device.withContext { _ = lt.cublasLtDestroy(handle) }
    }

    static func cudaType(_ dtype: DType) -> Int32 {
        switch dtype {
        case .f32: CUDA_R_32F
        case .bf16: CUDA_R_16BF
        case .f16: CUDA_R_16F
        default: preconditionFailure("no GEMM for \(dtype)")
        }
    }

    /// Largest power of two (≤ 256) dividing `address`: what cuBLASLt may assume of a pointer.
    static func alignment(_ address: UInt64) -> UInt32 {
        var a: UInt32 = 256
        while a > 1 && address % UInt64(a) != 0 { a /= 2 }
        return a
    }

    /// y[N, O] (f32) = x[N, K] · w[O, K]ᵀ + beta · y; x and w of type `abType`.
    func matmul(w: UInt64, x: UInt64, y: UInt64, rows n: Int, outputs o: Int, inputs k: Int, abType: DType, beta: Float,
                stream: CUstream?) throws(CUDAError) {
        let key = Key(m: o, n: n, k: k, abType: Self.cudaType(abType), alignments: [w, x, y].map(Self.alignment))
        let plan = try plan(key)
        try run(plan, w: w, x: x, y: y, beta: beta, stream: stream)
    }

    /// y[N, O] (f32) = x[N, K] · w[O, K]ᵀ + bias[O], the bias added in cuBLASLt's epilogue (no pass
    /// writing it into y first). False, with nothing queued, where no algorithm takes a bias of that type
    /// for this shape: the caller adds it another way.
    func matmul(w: UInt64, x: UInt64, y: UInt64, bias: UInt64, biasType: DType, rows n: Int, outputs o: Int, inputs k: Int,
                abType: DType, stream: CUstream?) throws(CUDAError) -> Bool {
        let key = Key(m: o, n: n, k: k, abType: Self.cudaType(abType), alignments: [w, x, y, bias].map(Self.alignment),
                      biasType: Self.cudaType(biasType))
        let plan = try plan(key)
        guard plan.supported else { return false }
        var pointer = UInt(bias)
        try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, 8),
                            "cublasLtMatmulDescSetAttribute", in: .cublasLt)
        try run(plan, w: w, x: x, y: y, beta: 0, stream: stream)
        return true
    }

    private func plan(_ key: Key) throws(CUDAError) -> Plan {
        if let cached = plans[key] { return cached }
        let plan = try makePlan(key)
        plans[key] = plan
        return plan
    }

    private func run(_ plan: Plan, w: UInt64, x: UInt64, y: UInt64, beta: Float, stream: CUstream?) throws(CUDAError) {
        var alpha: Float = 1
        var beta = beta
        try CUDAError.check(lt.cublasLtMatmul(handle, plan.desc, &alpha,
                                              UnsafeRawPointer(bitPattern: UInt(w)), plan.a,
                                              UnsafeRawPointer(bitPattern: UInt(x)), plan.b, &beta,
                                              UnsafeRawPointer(bitPattern: UInt(y)), plan.c,
                                              UnsafeMutableRawPointer(bitPattern: UInt(y)), plan.c,
                                              &plan.algo, UnsafeMutableRawPointer(bitPattern: UInt(workspace.deviceAddress)),
                                              workspace.byteCount, stream), "cublasLtMatmul", in: .cublasLt)
    }

    private func makePlan(_ key: Key) throws(CUDAError) -> Plan {
        let plan = Plan(lt: lt)
        try CUDAError.check(lt.cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", in: .cublasLt)
        var transposed = CUBLAS_OP_T, plain = CUBLAS_OP_N
        try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transposed, 4),
                            "cublasLtMatmulDescSetAttribute", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &plain, 4),
                            "cublasLtMatmulDescSetAttribute", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatrixLayoutCreate(&plan.a, key.abType, UInt64(key.k), UInt64(key.m), Int64(key.k)),
                            "cublasLtMatrixLayoutCreate", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatrixLayoutCreate(&plan.b, key.abType, UInt64(key.k), UInt64(key.n), Int64(key.k)),
                            "cublasLtMatrixLayoutCreate", in: .cublasLt)
        try CUDAError.check(lt.cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, UInt64(key.m), UInt64(key.n), Int64(key.m)),
                            "cublasLtMatrixLayoutCreate", in: .cublasLt)

        if let biasType = key.biasType {
            var epilogue = UInt32(CUBLASLT_EPILOGUE_BIAS), type = biasType
            try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, 4),
                                "cublasLtMatmulDescSetAttribute", in: .cublasLt)
            try CUDAError.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, 4),
                                "cublasLtMatmulDescSetAttribute", in: .cublasLt)
        }

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
        if key.biasType != nil && (status != 0 || returned == 0) {
            // This cuBLASLt has no kernel adding a bias of that type to this problem.
            plan.supported = false
            return plan
        }
        try CUDAError.check(status, "cublasLtMatmulAlgoGetHeuristic", in: .cublasLt)
        guard returned > 0 else {
            throw CUDAError(library: .cublasLt, code: CUDAError.cublasNotSupported.code, api: "cublasLtMatmulAlgoGetHeuristic",
                            message: "no cuBLASLt algorithm for [\(key.n), \(key.k)] × [\(key.m), \(key.k)]ᵀ in type \(key.abType)")
        }
        plan.algo = result.algo
        return plan
    }
}
