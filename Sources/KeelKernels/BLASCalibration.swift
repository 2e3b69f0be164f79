import Foundation
import KeelCore

/// The measured sgemm rates of the BLAS libraries this machine has, kept in `$XDG_CACHE_HOME/keel/blas.json`
/// (default `~/.cache/keel/blas.json`) so that the calibration runs once per machine: reused while the CPU (model
/// and instruction sets) and the set of libraries are the ones it measured; measured again, and the file
/// replaced, otherwise or when the file is unreadable. Delete the file to measure again.
struct BLASCalibration: Codable, Equatable {
    /// The CPU model and instruction sets the rates were measured on.
    var machine: String
    /// GFLOP/s per library (`BLASLibrary.Kind` raw values).
    var rates: [String: Double]
    /// When, as ISO 8601.
    var measured: String

    /// The library the rates favour: the fastest, unless OpenBLAS (the library Keel is tested with most) is
    /// within `margin` of it — a difference that small is the calibration's own noise.
    func fastest(margin: Double = 0.03) -> BLASLibrary.Kind {
        let best = BLASLibrary.Kind.allCases.filter { rates[$0.rawValue] != nil }.max { rates[$0.rawValue]! < rates[$1.rawValue]! }!
        if let openBLAS = rates[BLASLibrary.Kind.openblas.rawValue], openBLAS >= rates[best.rawValue]! * (1 - margin) {
            return .openblas
        }
        return best
    }

    /// The cached calibration for `kinds` on this machine, or a new one from `measure` (saved when the cache
    /// directory is writable). Processes serialise on a lock file beside the cache, so those that start together
    /// measure once, one at a time, and agree.
    static func cachedOrMeasured(
        _ kinds: [BLASLibrary.Kind], file: URL? = defaultFile, measure: (BLASLibrary.Kind) -> Double
    ) -> (calibration: BLASCalibration, fromCache: Bool, cacheFile: String?) {
        let host = HostDescription.current(processes: 1, threads: 1)
        let machine = "\(host.cpu) [\(host.instructionSets.joined(separator: " "))]"
        func measured() -> BLASCalibration {
            BLASCalibration(machine: machine, rates: Dictionary(uniqueKeysWithValues: kinds.map { ($0.rawValue, measure($0)) }),
                            measured: ISO8601DateFormatter().string(from: Date()))
        }
        guard let file, (try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(),
                                                                   withIntermediateDirectories: true)) != nil else {
            return (measured(), false, nil)
        }
        let lock = open(file.path + ".lock", O_CREAT | O_RDWR, 0o644)
        if lock >= 0 { flock(lock, LOCK_EX) }
        defer { if lock >= 0 { flock(lock, LOCK_UN); close(lock) } }
        if let data = try? Data(contentsOf: file), let cached = try? JSONDecoder().decode(BLASCalibration.self, from: data),
           cached.machine == machine, Set(cached.rates.keys) == Set(kinds.map(\.rawValue)) {
            return (cached, true, file.path)
        }
        let calibration = measured()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        guard let data = try? encoder.encode(calibration), (try? AtomicFile.write(data, to: file)) != nil else {
            return (calibration, false, nil)
        }
        return (calibration, false, file.path)
    }

    /// `$XDG_CACHE_HOME/keel/blas.json`, or under `~/.cache`; nil without either variable.
    static var defaultFile: URL? {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["HOME"].map { "\($0)/.cache" }
        return base.map { URL(fileURLWithPath: $0).appendingPathComponent("keel").appendingPathComponent("blas.json") }
    }
}
