import Foundation
import KeelCore

/// Measured sgemm rates, kept in a file under `$XDG_CACHE_HOME/keel` (default `~/.cache/keel`) so that a calibration
/// runs once per machine: the fp32 libraries' (`blas.json`) and OpenBLAS's kernel sets' (`openblas-kernels.json`).
/// Reused while the CPU (model, family, model number and stepping, instruction sets) and the candidates (libraries
/// with their files and OpenBLAS's kernels; kernel sets with OpenBLAS's version) are the ones measured; measured
/// again, and the file replaced, otherwise or when the file is unreadable. Delete the file to measure again.
struct BLASCalibration: Codable, Equatable {
    /// The CPU the rates were measured on: its model name, family, model number and stepping, and instruction sets.
    var machine: String
    /// GFLOP/s per candidate, keyed by its description.
    var rates: [String: Double]
    /// When, as ISO 8601.
    var measured: String

    /// The candidate the rates favour: the fastest, unless `preferred` (OpenBLAS among libraries, the library Keel is
    /// tested with most; SkylakeX among kernel sets) is within `margin` of it — a difference that small is the
    /// calibration's own noise.
    func fastest(preferring preferred: String, margin: Double = 0.03) -> String {
        let best = rates.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!
        if let rate = rates[preferred], rate >= best.value * (1 - margin) { return preferred }
        return best.key
    }

    /// This machine as the cache names it. Virtual machines often show a bare model name ("AMD EPYC") and the same
    /// instruction sets on CPU generations whose fastest kernels differ (Zen 4 and Zen 5), so the family, model
    /// number and stepping are part of it: a cache in a home directory shared between machines does not carry one
    /// machine's choice to another.
    static var machine: String {
        let host = HostDescription.current(processes: 1, threads: 1)
        return "\(host.cpu) (\(HostDescription.cpuSignature)) [\(host.instructionSets.joined(separator: " "))]"
    }

    /// The cached calibration of `libraries` on this machine, or a new one from `measure`, saved; nil when there is
    /// no cache directory or it cannot be written. Processes serialise on a lock file beside the cache, so those
    /// that start together (MPI ranks) measure once, one at a time, and agree.
    static func cachedOrMeasured(
        _ libraries: [String], file: URL? = defaultFile, measure: (String) -> Double
    ) -> (calibration: BLASCalibration, fromCache: Bool, file: String)? {
        cachedOrMeasured(libraries, file: file) { Dictionary(uniqueKeysWithValues: $0.map { ($0, measure($0)) }) }
    }

    /// As above, with every rate from one call of `measureAll` (which may alternate between the candidates, or
    /// return nil when it could not measure them: then nothing is saved and the result is nil).
    static func cachedOrMeasured(
        _ libraries: [String], file: URL?, measureAll: ([String]) -> [String: Double]?
    ) -> (calibration: BLASCalibration, fromCache: Bool, file: String)? {
        let machine = Self.machine
        guard let file, (try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(),
                                                                   withIntermediateDirectories: true)) != nil else {
            return nil
        }
        let lock = open(file.path + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lock >= 0 else { return nil }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN); close(lock) }
        if let data = try? Data(contentsOf: file), let cached = try? JSONDecoder().decode(BLASCalibration.self, from: data),
           cached.machine == machine, Set(cached.rates.keys) == Set(libraries) {
            return (cached, true, file.path)
        }
        guard let rates = measureAll(libraries), Set(rates.keys) == Set(libraries) else { return nil }
        let calibration = BLASCalibration(machine: machine, rates: rates, measured: ISO8601DateFormatter().string(from: Date()))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        guard let data = try? encoder.encode(calibration), (try? AtomicFile.write(data, to: file)) != nil else { return nil }
        return (calibration, false, file.path)
    }

    /// `$XDG_CACHE_HOME/keel/blas.json`, or under `~/.cache`; nil without either variable.
    static var defaultFile: URL? { cacheFile("blas.json") }

    /// `$XDG_CACHE_HOME/keel/NAME`, or under `~/.cache`; nil without either variable.
    static func cacheFile(_ name: String) -> URL? {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["HOME"].map { "\($0)/.cache" }
        return base.map { URL(fileURLWithPath: $0).appendingPathComponent("keel").appendingPathComponent(name) }
    }
}
