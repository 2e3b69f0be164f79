import Foundation
import KeelCore

/// The measured sgemm rates of the BLAS libraries this machine has, kept in `$XDG_CACHE_HOME/keel/blas.json`
/// (default `~/.cache/keel/blas.json`) so that the calibration runs once per machine: reused while the CPU (model
/// and instruction sets) and the libraries (files, and OpenBLAS's kernels) are the ones it measured; measured
/// again, and the file replaced, otherwise or when the file is unreadable. Delete the file to measure again.
struct BLASCalibration: Codable, Equatable {
    /// The CPU model and instruction sets the rates were measured on.
    var machine: String
    /// GFLOP/s per library, keyed by the library's description.
    var rates: [String: Double]
    /// When, as ISO 8601.
    var measured: String

    /// The library the rates favour: the fastest, unless `preferred` (OpenBLAS, the library Keel is tested with
    /// most) is within `margin` of it — a difference that small is the calibration's own noise.
    func fastest(preferring preferred: String, margin: Double = 0.03) -> String {
        let best = rates.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!
        if let rate = rates[preferred], rate >= best.value * (1 - margin) { return preferred }
        return best.key
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
        let host = HostDescription.current(processes: 1, threads: 1)
        let machine = "\(host.cpu) [\(host.instructionSets.joined(separator: " "))]"
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
