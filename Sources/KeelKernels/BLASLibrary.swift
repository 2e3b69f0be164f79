import COpenBLAS

/// The library behind fp32 matrix products, as it describes itself (for benchmark rows and run records).
public enum BLASLibrary {
    /// E.g. `OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64 (kernels: SkylakeX)`: its build
    /// and the kernels it chose for this CPU (Keel selects SkylakeX's on AVX-512 CPUs; docs/platform.md).
    public static var description: String {
        let config = openblas_get_config().map { String(cString: $0) } ?? "OpenBLAS"
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        return "\(config.trimmingCharacters(in: .whitespaces)) (kernels: \(core))"
    }
}
