import COpenBLAS
import Foundation
import KeelCore

/// The library behind fp32 matrix products, chosen at run time among those this machine has: OpenBLAS (linked,
/// always there), BLIS (Debian's `libblis4-serial`, or another `libblis.so.4`) and Intel MKL (`libmkl_rt.so.2`:
/// PyPI's `mkl` wheel, found through `LD_LIBRARY_PATH`, `$VIRTUAL_ENV` or `$CONDA_PREFIX`, or a Python environment
/// whose bin/ is on `PATH`). All three export the same `cblas_sgemm`, so one binary runs whichever is fastest on
/// the CPU it meets.
///
/// The choice: `KEEL_BLAS` (`openblas`, `blis`, `mkl`, or the path of a library exporting `cblas_sgemm`) when
/// set; else the one a calibration on this machine measured fastest on Keel's own products (single-threaded
/// sgemm on the blocks of a training step's products; OpenBLAS unless another is more than 3% faster), cached
/// in `$XDG_CACHE_HOME/keel/blas.json` (default `~/.cache`) per CPU and set of libraries, so it runs once per
/// machine (under a file lock, so processes that start together agree); OpenBLAS when no other library is
/// there, or when there is nowhere to keep the calibration (processes measuring each their own could disagree).
public struct BLASLibrary: Sendable {
    /// The libraries Keel knows how to load and make single-threaded.
    public enum Kind: String, CaseIterable, Sendable {
        case openblas, blis, mkl
    }

    /// Which library this is.
    public let kind: Kind
    /// The file it was loaded from (or the soname the dynamic loader resolved; "linked" for OpenBLAS).
    public let path: String
    /// How it was chosen: `KEEL_BLAS`, the calibration's rates, or why there was no calibration.
    public private(set) var reason = ""
    /// What BLIS or MKL says of itself (version, and BLIS's kernel set), read when it loaded.
    private let identity: String
    let sgemm: SgemmFunction
    let sgemv: SgemvFunction

    typealias SgemmFunction = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?,
                                              Int32, UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?,
                                              Int32) -> Void
    typealias SgemvFunction = @convention(c) (Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                              UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void

    /// The library fp32 products use in this process.
    public static let selected: BLASLibrary = choose()

    /// E.g. `OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64 (kernels: Haswell); kernels chosen by
    /// measurement: Haswell 99.3, SkylakeX 94.7 GFLOP/s (cached in …); calibrated: openblas 99.3, blis 91.5 GFLOP/s
    /// (…)`: the library, its build and kernels where it says (and, for OpenBLAS's on AVX-512 CPUs, how they were
    /// chosen), and why the library was chosen.
    public static var description: String {
        // How OpenBLAS's kernels were chosen matters only where OpenBLAS runs the products, and is said only where
        // the kernels it loaded are the ones chosen (the note travels in the environment, which a user may change).
        let environment = ProcessInfo.processInfo.environment
        let loaded = openblas_get_corename().map { String(cString: $0).lowercased() }
        let kernels = selected.kind == .openblas && loaded != nil && environment["OPENBLAS_CORETYPE"]?.lowercased() == loaded
            ? environment[OpenBLASKernels.reasonVariable].map { "; kernels chosen \($0)" } ?? "" : ""
        return "\(selected.name)\(kernels); \(selected.reason)"
    }

    /// The library as it describes itself (OpenBLAS: its build and the kernels it loaded — on AVX-512 CPUs those
    /// `OpenBLASKernels` measured fastest).
    public var name: String {
        switch kind {
        case .openblas:
            let config = openblas_get_config().map { String(cString: $0) } ?? "OpenBLAS"
            let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
            return "\(config.trimmingCharacters(in: .whitespaces)) (kernels: \(core))"
        case .blis, .mkl: return identity
        }
    }

    /// Loads `kind` (from `path`, or the first of its usual files that opens), made single-threaded (Keel's pool
    /// parallelises around it) and checked on a 2 × 2 product; throws what went wrong with the last file tried.
    static func load(_ kind: Kind, path explicit: String? = nil) throws -> BLASLibrary {
        let environment = ProcessInfo.processInfo.environment
        let candidates: [String] = explicit.map { [$0] } ?? {
            switch kind {
            case .openblas: return ["linked"]
            case .blis: return ["libblis.so.4"]
            case .mkl:
                // PyPI's wheel puts it in a Python environment's lib/: the active one, or one whose bin/ is on PATH.
                let environments = ["VIRTUAL_ENV", "CONDA_PREFIX"].compactMap { environment[$0] }
                    + (environment["PATH"] ?? "").split(separator: ":").filter { $0.hasPrefix("/") }.map { "\($0)/.." }
                return ["libmkl_rt.so.2"] + environments.map { ("\($0)/lib/libmkl_rt.so.2" as NSString).standardizingPath }
                    .filter { FileManager.default.fileExists(atPath: $0) }
            }
        }()
        var problem = "no \(kind.rawValue) library found"
        for candidate in candidates {
            // The linked OpenBLAS is the process's own. Another library is bound to its own symbols first
            // (DEEPBIND): BLIS's cblas_sgemm calls sgemm_, which would otherwise resolve to OpenBLAS's.
            guard let handle = candidate == "linked" ? dlopen(nil, RTLD_NOW) : dlopen(candidate, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)
            else {
                problem = dlerror().map { String(cString: $0) } ?? "cannot open \(candidate)"
                continue
            }
            guard let sgemm = dlsym(handle, "cblas_sgemm"), let sgemv = dlsym(handle, "cblas_sgemv") else {
                problem = "\(candidate) has no cblas_sgemm and cblas_sgemv"
                dlclose(handle)
                continue
            }
            switch kind {
            case .openblas: useSingleThreadedBLAS()
            case .blis:
                typealias SetThreads = @convention(c) (Int64) -> Void
                dlsym(handle, "bli_thread_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self)(1) }
            case .mkl:
                // Before MKL's first product: 32-bit integers (MKL_INTERFACE_LP64, whatever MKL_INTERFACE_LAYER
                // says), and its sequential layer (MKL_THREADING_SEQUENTIAL).
                typealias SetLayer = @convention(c) (Int32) -> Int32
                dlsym(handle, "MKL_Set_Interface_Layer").map { _ = unsafeBitCast($0, to: SetLayer.self)(0) }
                dlsym(handle, "MKL_Set_Threading_Layer").map { _ = unsafeBitCast($0, to: SetLayer.self)(1) }
            }
            let library = BLASLibrary(kind: kind, path: candidate, identity: identity(kind, handle, candidate),
                                      sgemm: unsafeBitCast(sgemm, to: SgemmFunction.self), sgemv: unsafeBitCast(sgemv, to: SgemvFunction.self))
            guard library.multipliesCorrectly else {
                problem = "\(candidate)'s cblas_sgemm gives wrong results (another integer width?)"
                continue
            }
            return library
        }
        throw KeelError(problem)
    }

    /// This library with `reason` as why it runs.
    private func chosen(_ reason: String) -> BLASLibrary {
        var library = self
        library.reason = reason
        return library
    }

    /// "BLIS 0.9.0 (libblis.so.4, kernels: generic)" — BLIS names the kernel set it picked for this CPU, which
    /// decides its speed (0.9.0 does not know Zen 5 and runs its generic C kernels) — or MKL's version string.
    private static func identity(_ kind: Kind, _ handle: UnsafeMutableRawPointer, _ path: String) -> String {
        switch kind {
        case .openblas: return "OpenBLAS"
        case .blis:
            typealias Text = @convention(c) () -> UnsafePointer<CChar>?
            typealias ArchitectureID = @convention(c) () -> Int32
            typealias ArchitectureName = @convention(c) (Int32) -> UnsafePointer<CChar>?
            let version = dlsym(handle, "bli_info_get_version_str").flatMap { unsafeBitCast($0, to: Text.self)() }
                .map { " " + String(cString: $0) } ?? ""
            let kernels = dlsym(handle, "bli_arch_query_id").flatMap { id in
                dlsym(handle, "bli_arch_string").flatMap {
                    unsafeBitCast($0, to: ArchitectureName.self)(unsafeBitCast(id, to: ArchitectureID.self)())
                }
            }.map { ", kernels: " + String(cString: $0) } ?? ""
            return "BLIS\(version) (\(path)\(kernels))"
        case .mkl:
            typealias VersionString = @convention(c) (UnsafeMutablePointer<CChar>, Int32) -> Void
            guard let function = dlsym(handle, "MKL_Get_Version_String") else { return "Intel MKL (\(path))" }
            var buffer = [CChar](repeating: 0, count: 256)
            unsafeBitCast(function, to: VersionString.self)(&buffer, Int32(buffer.count - 1))
            let version = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingCharacters(in: .whitespaces)
            return "\(version.isEmpty ? "Intel MKL" : version) (\(path))"
        }
    }

    /// [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50] through `sgemm`, row-major: the calling convention holds.
    private var multipliesCorrectly: Bool {
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        sgemm(cblasRowMajor, Transpose.none.cblas, Transpose.none.cblas, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
        return c == [19, 22, 43, 50]
    }

    /// `KEEL_BLAS`, else the cached or freshly calibrated fastest, else OpenBLAS.
    private static func choose() -> BLASLibrary {
        // OpenBLAS's threads start when it loads, whichever library then runs the products.
        useSingleThreadedBLAS()
        let environment = ProcessInfo.processInfo.environment
        if let wanted = environment["KEEL_BLAS"] {
            let kind = Kind(rawValue: wanted)
            let path = kind == nil && wanted.hasPrefix("/") ? wanted : nil
            if kind == nil && path == nil {
                warn("KEEL_BLAS=\(wanted) is not one of openblas, blis, mkl or a library's absolute path; choosing as without it")
            } else {
                do {
                    return try load(kind ?? guessKind(path!), path: path).chosen("chosen by KEEL_BLAS=\(wanted)")
                } catch {
                    warn("KEEL_BLAS=\(wanted): \(error); choosing as without it")
                }
            }
        }
        let available = Kind.allCases.compactMap { try? load($0) }   // OpenBLAS, linked, first
        guard available.count > 1 else { return available[0].chosen("the only BLAS library here") }
        // Calibrations are kept per library file and, for OpenBLAS, per kernel set (OPENBLAS_CORETYPE).
        let libraries = available.map { $0.kind == .openblas ? $0.name : "\($0.kind.rawValue) (\($0.path))" }
        guard let (calibration, fromCache, file) = BLASCalibration.cachedOrMeasured(libraries, measure: { library in
            available[libraries.firstIndex(of: library)!].calibrationRate()
        }) else {
            return available[0].chosen("not calibrated: nowhere to keep the result (set XDG_CACHE_HOME or HOME)")
        }
        let kindOf = Dictionary(uniqueKeysWithValues: zip(libraries, available.map(\.kind)))
        let rates = calibration.rates.sorted { $0.value > $1.value }
            .map { String(format: "%@ %.1f", kindOf[$0.key]!.rawValue, $0.value) }.joined(separator: ", ")
        let fastest = available[libraries.firstIndex(of: calibration.fastest(preferring: libraries[0]))!]
        return fastest.chosen("calibrated: \(rates) GFLOP/s (\(fromCache ? "cached in" : "saved to") \(file))")
    }

    /// Which loader a library given by path needs: by its file name, OpenBLAS's when it says nothing.
    private static func guessKind(_ path: String) -> Kind {
        let file = (path as NSString).lastPathComponent.lowercased()
        return file.contains("mkl") ? .mkl : file.contains("blis") ? .blis : .openblas
    }

    /// GFLOP/s of single-threaded sgemm on the blocks `gemm` hands each call in a training step at width 768 over
    /// 1,024 tokens: 64-row blocks of the forward and input-gradient products, 64-column blocks of a weight
    /// gradient and of the output head's forward (C wider than tall is split by columns); the best of 8 repeats.
    func calibrationRate() -> Double {
        let shapes: [(m: Int, n: Int, k: Int, transA: Transpose, transB: Transpose)] = [
            (64, 2304, 768, .none, .none), (64, 768, 3072, .none, .none), (64, 768, 2304, .none, .transposed),
            (768, 64, 1024, .transposed, .none), (1024, 64, 768, .none, .transposed),
        ]
        var stream = RandomStream(seed: 1)
        let size = shapes.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max()!
        let a = (0..<size).map { _ in stream.nextUniform() - 0.5 }, b = (0..<size).map { _ in stream.nextUniform() - 0.5 }
        var c = [Float](repeating: 0, count: size)
        var seconds = 0.0, flops = 0.0
        for (m, n, k, transA, transB) in shapes {
            var best = Double.infinity
            for _ in 0..<8 {
                let start = DispatchTime.now().uptimeNanoseconds
                sgemm(cblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k), 1, a, Int32(transA == .none ? k : m), b,
                      Int32(transB == .none ? n : k), 0, &c, Int32(n))
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            seconds += best
            flops += 2 * Double(m * n * k)
        }
        return flops / seconds / 1e9
    }
}
