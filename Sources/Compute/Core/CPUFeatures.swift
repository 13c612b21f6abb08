import CShims

/// What the CPU kernels need from the processor. The numeric modules are compiled for x86-64-v3
/// (AVX2, FMA, F16C) on x86; running on an older processor would die on an illegal instruction, so
/// entry points call `CPUFeatures.check()` first and report it as a one-line error instead.
public enum CPUFeatures {
    public static var supportsKernels: Bool { cshim_cpu_has_avx2_fma() != 0 }

    public static func check() throws(ComputeError) {
        guard supportsKernels else {
            throw ComputeError("this processor lacks AVX2/FMA/F16C, which colocate's CPU kernels are built for (x86-64-v3)")
        }
    }
}
