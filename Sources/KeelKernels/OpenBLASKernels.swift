import COpenBLAS
import Foundation

/// OpenBLAS's kernel set on CPUs with AVX-512, chosen by measurement. Debian's OpenBLAS 0.3.21 does not know Zen 4/5
/// and loads its Haswell (AVX2) kernels there: on Zen 5 about a third of its SkylakeX (AVX-512) kernels' speed, while
/// on Zen 4, whose AVX-512 runs on 256-bit units, the Haswell kernels are the faster on Keel's products
/// (docs/platform.md). OpenBLAS reads `OPENBLAS_CORETYPE` only as it loads, so each candidate is timed in a process
/// of its own, and `keel` re-executes itself with the winner.
public enum OpenBLASKernels {
    /// The kernel sets compared (values of `OPENBLAS_CORETYPE`).
    public static let candidates = ["Haswell", "SkylakeX"]
    /// The kernel set when there is nowhere to keep a measurement (processes measuring each for itself could
    /// disagree), and the one kept when the other is less than `margin` faster: the widest vectors.
    public static let fallback = "SkylakeX"
    static let margin = 0.03
    /// Set to 1 in a probe's environment: the process prints `probeRate()` and exits.
    public static let probeVariable = "KEEL_OPENBLAS_PROBE"
    /// How the kernels were chosen, passed by `keel` to the process it re-executes (`BLASLibrary.description`).
    public static let reasonVariable = "KEEL_OPENBLAS_KERNELS"
    /// Times each candidate is measured, alternating, keeping its best: the host's slow phases hit both alike. Five:
    /// with three, a slow phase over the whole measurement (about a second) once made Zen 4 cache the slower set.
    static let rounds = 5

    /// The linked OpenBLAS's calibration rate (GFLOP/s of `BLASLibrary`'s calibration) with the kernels it loaded.
    public static func probeRate() throws -> Double { try BLASLibrary.load(.openblas).calibrationRate() }

    /// The kernel set to load and how it was chosen ("by measurement: …"), or nil to keep OpenBLAS's own choice: the
    /// fastest candidate (`fallback` unless the other is more than `margin` faster) by the rates cached in
    /// `$XDG_CACHE_HOME/keel/openblas-kernels.json` (default `~/.cache`) for this CPU and OpenBLAS version or, the
    /// first time, by `probe` (a candidate's rate, or nil when it could not be measured), under the cache's lock so
    /// that processes starting together measure once and agree. Nil when a probe fails (nothing saved); `fallback`,
    /// unmeasured, with nowhere to keep the rates.
    public static func choose(probe: (String) -> Double?) -> (kernels: String, reason: String)? {
        choose(file: BLASCalibration.cacheFile("openblas-kernels.json"), library: openBLASVersion, probe: probe)
    }

    static func choose(file: URL?, library: String, probe: (String) -> Double?) -> (kernels: String, reason: String)? {
        // Keys name the library too: another OpenBLAS is measured afresh.
        let keys = candidates.map { "\(library) (kernels: \($0))" }
        var measured: [String: Double] = [:], failed = false
        let result = BLASCalibration.cachedOrMeasured(keys, file: file) { keys in
            for _ in 0..<rounds {
                for (key, candidate) in zip(keys, candidates) {
                    guard let rate = probe(candidate) else {
                        failed = true
                        return nil
                    }
                    measured[key] = max(measured[key] ?? 0, rate)
                }
            }
            return measured
        }
        // A probe that failed leaves OpenBLAS's own choice, which every process makes alike (it was warned about; the
        // next start measures again). Rates that could not be kept give `fallback`: processes measuring each for
        // itself could disagree.
        guard !failed else { return nil }
        guard let (calibration, fromCache, path) = result else {
            let why = measured.isEmpty ? "no cache directory to keep a measurement in" : "the rates could not be saved in \(file!.path)"
            return (fallback, "without measurement (\(why)): \(fallback)")
        }
        let kernel = { (key: String) in candidates[keys.firstIndex(of: key)!] }
        let chosen = calibration.fastest(preferring: keys[candidates.firstIndex(of: fallback)!], margin: margin)
        let text = calibration.rates.sorted { $0.value > $1.value }
            .map { String(format: "%@ %.1f", kernel($0.key), $0.value) }.joined(separator: ", ")
        return (kernel(chosen), "by measurement: \(text) GFLOP/s (\(fromCache ? "cached in" : "saved to") \(path))")
    }

    /// "OpenBLAS 0.3.21": the linked library's name and version, without the kernels it loaded.
    static var openBLASVersion: String {
        let config = openblas_get_config().map { String(cString: $0) } ?? "OpenBLAS"
        return config.split(separator: " ").prefix(2).joined(separator: " ")
    }
}
