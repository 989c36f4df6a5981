import CBanyanKernels

/// Which matmul implementation runs: chosen once from CPUID, or forced to `portable`.
public enum KernelPath: String, Sendable, CaseIterable {
    /// AVX-512 F/BW/VL kernels, and the CPU also has AVX512_BF16 (`matmulFast` available).
    case avx512bf16
    case avx512f
    case avx2
    /// Swift SIMD16 kernels (any CPU).
    case portable
}

/// Kernel path selection. Detection happens once; `forcePortable` is set by the CLI or tests
/// before work starts (it is read at every matmul call, so flipping it mid-run is allowed but
/// mixes paths whose bits differ).
public enum KernelDispatch {
    /// Best path this CPU and OS support.
    public static let detected: KernelPath = {
        if banyan_cpu_has_avx512bf16() != 0 { return .avx512bf16 }
        if banyan_cpu_has_avx512() != 0 { return .avx512f }
        if banyan_cpu_has_avx2() != 0 { return .avx2 }
        return .portable
    }()

    /// Forces the portable Swift path (reproducible across CPUs, slow).
    nonisolated(unsafe) public static var forcePortable = false

    /// Whether this CPU can run `path`.
    public static func supports(_ path: KernelPath) -> Bool {
        switch path {
        case .portable: true
        case .avx2: detected != .portable
        case .avx512f: detected == .avx512f || detected == .avx512bf16
        case .avx512bf16: detected == .avx512bf16
        }
    }

    /// Every path this CPU can run, best first.
    public static var supportedPaths: [KernelPath] { KernelPath.allCases.filter(supports) }

    /// Whether `matmulFast` (bf16 dot products) can run: AVX512_BF16 present and portable not forced.
    public static var fastMatmulAvailable: Bool { active == .avx512bf16 }

    /// Whether bf16 dot products outrun float32 FMA products on this CPU, so `fast` precision uses
    /// them. Measured (docs/BENCHMARKS.md): AMD Zen 4 runs vdpbf16ps at 4x its FMA rate (matmulFast
    /// 2x matmul); Intel Sapphire/Emerald Rapids at half, where matmul beats matmulFast by 25-35%.
    /// A CPUID rule rather than a timing probe, so a machine's outputs never depend on how busy it
    /// was when the engine started.
    public static var bf16ProductsFaster: Bool { fastMatmulAvailable && vendorIsAMD }

    /// CPUID's vendor, read once (CPUID traps to the hypervisor in a VM; the step asks every time).
    private static let vendorIsAMD = banyan_cpu_is_amd() != 0

    /// The path the next matmul uses.
    public static var active: KernelPath { forcePortable ? .portable : detected }

    /// One line for `banyan info`, e.g. "matmul: avx512bf16 (detected avx512bf16)".
    public static var description: String {
        "matmul: \(active.rawValue) (detected \(detected.rawValue)\(forcePortable ? ", portable forced" : ""))"
    }
}

/// How linear layers treat activations; all accumulate in float32. `exact` keeps them float32
/// through every product. `bf16` rounds them to bf16 inside products with bf16 weights where the
/// CPU has bf16 dot products (AVX512_BF16), as other engines do. `fast` is whichever of the two runs
/// faster on this CPU (`KernelDispatch.bf16ProductsFaster`). Without AVX512_BF16 all three run `exact`
/// products; `fast` and `bf16` still differ from `exact` in their default KV type (bf16).
public enum Precision: String, Sendable, CaseIterable {
    case exact, fast, bf16
}

/// Register-only arithmetic probes (C, `peak_x86.c`): the core's instruction roof that kernels are
/// compared with, as opposed to the rate any real product reaches.
public enum InstructionPeak {
    public enum Kind: Sendable { case f32FMA, bf16Dot }

    /// FLOPs done by `iterations` rounds of independent chains on the calling thread; 0 where the
    /// CPU lacks the instructions (every non-x86 CPU: there is no portable probe).
    public static func run(_ kind: Kind, iterations: Int) -> Double {
        banyan_peak_probe(kind == .f32FMA ? Int32(BANYAN_PEAK_F32) : Int32(BANYAN_PEAK_BF16), iterations)
    }
}
