import Foundation

/// OpenBLAS's kernel set on CPUs with AVX-512, chosen by measurement. Debian's OpenBLAS 0.3.21 does not know Zen 4/5
/// and loads its Haswell (AVX2) kernels there: on Zen 5 about a third of its SkylakeX (AVX-512) kernels' speed, while
/// on Zen 4, whose AVX-512 runs on 256-bit units, the Haswell kernels are the faster on Keel's products
/// (docs/platform.md). OpenBLAS reads `OPENBLAS_CORETYPE` only as it loads, so each candidate is timed in a process
/// of its own, and `keel` re-executes itself with the winner.
public enum OpenBLASKernels {
    /// The kernel sets compared (values of `OPENBLAS_CORETYPE`).
    public static let candidates = ["Haswell", "SkylakeX"]
    /// The kernel set when there is no measurement to go by: the widest vectors.
    public static let fallback = "SkylakeX"
    /// Set in a probe's environment: the process prints `probeRate()` and exits.
    public static let probeVariable = "KEEL_OPENBLAS_PROBE"
    /// How the kernels were chosen, passed by `keel` to the process it re-executes (`BLASLibrary.description`).
    public static let reasonVariable = "KEEL_OPENBLAS_KERNELS"
    /// Times each candidate is measured, alternating, keeping its best: the host's slow phases hit both alike.
    static let rounds = 3

    /// The linked OpenBLAS's calibration rate (GFLOP/s of `BLASLibrary`'s calibration) with the kernels it loaded.
    public static func probeRate() throws -> Double { try BLASLibrary.load(.openblas).calibrationRate() }

    /// The kernel set to load and how it was chosen ("by measurement: …"): the fastest candidate by the rates cached in
    /// `$XDG_CACHE_HOME/keel/openblas-kernels.json` (default `~/.cache`) or, the first time on a machine, by `probe`
    /// (a candidate's rate, or nil when it could not be measured), under the cache's lock so that processes starting
    /// together measure once and agree. `fallback` when nothing could be measured or kept.
    public static func choose(probe: (String) -> Double?) -> (kernels: String, reason: String) {
        choose(file: BLASCalibration.cacheFile("openblas-kernels.json"), probe: probe)
    }

    static func choose(file: URL?, probe: (String) -> Double?) -> (kernels: String, reason: String) {
        let result = BLASCalibration.cachedOrMeasured(candidates, file: file) { candidates in
            var best: [String: Double] = [:]
            for _ in 0..<rounds {
                for candidate in candidates {
                    guard let rate = probe(candidate) else { return nil }
                    best[candidate] = max(best[candidate] ?? 0, rate)
                }
            }
            return best
        }
        guard let (calibration, fromCache, path) = result else {
            return (fallback, "without measurement (no kernel set could be timed, or nowhere to keep the result): \(fallback)")
        }
        let kernels = calibration.fastest(preferring: fallback, margin: 0)
        let rates = calibration.rates.sorted { $0.value > $1.value }
            .map { String(format: "%@ %.1f", $0.key, $0.value) }.joined(separator: ", ")
        return (kernels, "by measurement: \(rates) GFLOP/s (\(fromCache ? "cached in" : "saved to") \(path))")
    }
}
