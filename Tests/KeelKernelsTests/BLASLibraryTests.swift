import Foundation
@testable import KeelKernels
import KeelCore
import XCTest

final class BLASLibraryTests: XCTestCase {
    /// OpenBLAS describes its build and the kernels it chose for this CPU.
    func testOpenBLASDescribesItselfAndItsKernels() throws {
        let name = try BLASLibrary.load(.openblas).name
        XCTAssertTrue(name.hasPrefix("OpenBLAS"), name)
        XCTAssertTrue(name.contains("(kernels: "), name)
        XCTAssertFalse(name.contains("(kernels: unknown)"), name)
        XCTAssertTrue(BLASLibrary.description.hasPrefix(BLASLibrary.selected.name + "; "), BLASLibrary.description)
    }

    /// Every library this machine has computes C = alpha · op(A) · op(B) + beta · C through Keel's calls, in
    /// every operand order and with row strides, and c = alpha · a · B + beta · c through sgemv: against a
    /// float64 product computed here.
    func testEveryLibraryHereMultipliesCorrectly() throws {
        let libraries = BLASLibrary.Kind.allCases.compactMap { try? BLASLibrary.load($0) }
        XCTAssertEqual(libraries.first?.kind, .openblas, "OpenBLAS is always there")
        print("BLAS libraries on this machine: \(libraries.map { "\($0.kind.rawValue) (\($0.path))" }.joined(separator: ", "))")
        for kind in BLASLibrary.Kind.allCases where !libraries.contains(where: { $0.kind == kind }) {
            print("not run: \(kind.rawValue) is not installed here")
        }
        var stream = RandomStream(seed: 9)
        let (m, n, k) = (37, 29, 45)
        for library in libraries {
            for (transA, transB) in [(Transpose.none, Transpose.none), (.none, .transposed), (.transposed, .none), (.transposed, .transposed)] {
                let lda = (transA == .none ? k : m) + 2, ldb = (transB == .none ? n : k) + 3, ldc = n + 1
                let a = (0..<lda * (transA == .none ? m : k)).map { _ in stream.nextUniform() - 0.5 }
                let b = (0..<ldb * (transB == .none ? k : n)).map { _ in stream.nextUniform() - 0.5 }
                let start = (0..<ldc * m).map { _ in stream.nextUniform() - 0.5 }
                var c = start
                library.sgemm(cblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k), 1.5, a, Int32(lda), b, Int32(ldb),
                              0.5, &c, Int32(ldc))
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k {
                            sum += Double(transA == .none ? a[i * lda + p] : a[p * lda + i]) * Double(transB == .none ? b[p * ldb + j] : b[j * ldb + p])
                        }
                        XCTAssertEqual(Double(c[i * ldc + j]), 1.5 * sum + 0.5 * Double(start[i * ldc + j]), accuracy: 1e-4,
                                       "\(library.kind) \(transA) \(transB) at \(i),\(j)")
                    }
                }
            }
            // sgemv as `gemm` uses it for one row: y[n] = 2 · x[k] · B[k×n] + y (B's transpose times x, row-major).
            let b = (0..<k * n).map { _ in stream.nextUniform() - 0.5 }, x = (0..<k).map { _ in stream.nextUniform() - 0.5 }
            var y = [Float](repeating: 1, count: n)
            library.sgemv(cblasRowMajor, Transpose.transposed.cblas, Int32(k), Int32(n), 2, b, Int32(n), x, 1, 1, &y, 1)
            for j in 0..<n {
                let dot = (0..<k).reduce(0.0) { $0 + Double(b[$1 * n + j]) * Double(x[$1]) }
                XCTAssertEqual(Double(y[j]), 2 * dot + 1, accuracy: 1e-4, "\(library.kind) sgemv at \(j)")
            }
        }
    }

    /// Each library runs its own kernels: their products of the same random matrices differ somewhere in the low
    /// bits (each sums in its own order). Equal bits would mean one library's calls landing in another's code, as
    /// BLIS's cblas_sgemm did in OpenBLAS's sgemm_ before BLIS was opened with RTLD_DEEPBIND.
    func testEachLibraryRunsItsOwnKernels() throws {
        let libraries = BLASLibrary.Kind.allCases.compactMap { try? BLASLibrary.load($0) }
        guard libraries.count > 1 else {
            print("not run: only OpenBLAS on this machine (\(BLASLibrary.Kind.allCases.filter { $0 != .openblas }.map(\.rawValue).joined(separator: ", ")) not installed)")
            return
        }
        var stream = RandomStream(seed: 4)
        let (m, n, k) = (96, 80, 777)
        let a = (0..<m * k).map { _ in stream.nextUniform() - 0.5 }, b = (0..<k * n).map { _ in stream.nextUniform() - 0.5 }
        let products = libraries.map { library in
            var c = [Float](repeating: 0, count: m * n)
            library.sgemm(cblasRowMajor, Transpose.none.cblas, Transpose.none.cblas, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
            return c.map(\.bitPattern)
        }
        for i in libraries.indices {
            for j in libraries.indices where j > i {
                XCTAssertNotEqual(products[i], products[j], "\(libraries[i].kind) and \(libraries[j].kind) gave the same bits")
            }
        }
    }

    /// A measurable rate, in the range of a CPU core (not zero, not infinite).
    func testCalibrationMeasuresARate() throws {
        let rate = try BLASLibrary.load(.openblas).calibrationRate()
        XCTAssertTrue(rate > 0.1 && rate < 100_000, "\(rate) GFLOP/s")
    }

    /// OpenBLAS stays unless another library is more than 3% faster; otherwise the fastest wins.
    func testTheFastestWinsBeyondTheNoise() {
        func choice(_ rates: [String: Double]) -> String {
            BLASCalibration(machine: "m", rates: rates, measured: "").fastest(preferring: "openblas")
        }
        XCTAssertEqual(choice(["openblas": 100, "blis": 102]), "openblas")
        XCTAssertEqual(choice(["openblas": 100, "blis": 110, "mkl": 105]), "blis")
        XCTAssertEqual(choice(["openblas": 100, "mkl": 200]), "mkl")
        XCTAssertEqual(choice(["blis": 90, "mkl": 95]), "mkl")
    }

    /// The first calibration is saved; the next with the same libraries reads it without measuring; another set
    /// of libraries (or OpenBLAS with other kernels), or an unreadable file, is measured again and replaces it;
    /// without a writable directory there is no calibration (each process measuring its own could disagree).
    func testCalibrationIsCachedPerMachineAndLibraries() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("blas-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("keel").appendingPathComponent("blas.json")
        var measured: [String] = []
        func calibrate(_ libraries: [String], file: URL?) -> (calibration: BLASCalibration, fromCache: Bool, file: String)? {
            BLASCalibration.cachedOrMeasured(libraries, file: file) { library in
                measured.append(library)
                return library.hasPrefix("blis") ? 200 : 100
            }
        }
        let first = try XCTUnwrap(calibrate(["OpenBLAS (kernels: Haswell)", "blis (libblis.so.4)"], file: file))
        XCTAssertEqual(measured, ["OpenBLAS (kernels: Haswell)", "blis (libblis.so.4)"])
        XCTAssertFalse(first.fromCache)
        XCTAssertEqual(first.file, file.path)
        XCTAssertEqual(first.calibration.fastest(preferring: "OpenBLAS (kernels: Haswell)"), "blis (libblis.so.4)")
        let saved = try JSONDecoder().decode(BLASCalibration.self, from: Data(contentsOf: file))
        XCTAssertEqual(saved, first.calibration)
        XCTAssertTrue(saved.machine.contains(HostDescription.current(processes: 1, threads: 1).cpu), saved.machine)

        measured = []
        let second = try XCTUnwrap(calibrate(["blis (libblis.so.4)", "OpenBLAS (kernels: Haswell)"], file: file))
        XCTAssertEqual(measured, [], "read from the cache")
        XCTAssertTrue(second.fromCache)
        XCTAssertEqual(second.calibration, first.calibration)

        _ = calibrate(["OpenBLAS (kernels: SkylakeX)", "blis (libblis.so.4)"], file: file)
        XCTAssertEqual(measured, ["OpenBLAS (kernels: SkylakeX)", "blis (libblis.so.4)"], "other kernels: measured again")
        XCTAssertEqual(Set(try JSONDecoder().decode(BLASCalibration.self, from: Data(contentsOf: file)).rates.keys),
                       ["OpenBLAS (kernels: SkylakeX)", "blis (libblis.so.4)"])

        try Data("{not json".utf8).write(to: file)
        measured = []
        let afterCorruption = try XCTUnwrap(calibrate(["OpenBLAS (kernels: SkylakeX)", "blis (libblis.so.4)"], file: file))
        XCTAssertFalse(afterCorruption.fromCache)
        XCTAssertEqual(measured.count, 2)
        XCTAssertNoThrow(try JSONDecoder().decode(BLASCalibration.self, from: Data(contentsOf: file)), "replaced")

        let blocked = directory.appendingPathComponent("file-not-directory")
        try Data().write(to: blocked)
        measured = []
        XCTAssertNil(calibrate(["OpenBLAS (kernels: SkylakeX)", "blis (libblis.so.4)"], file: blocked.appendingPathComponent("keel/blas.json")))
        XCTAssertNil(calibrate(["OpenBLAS (kernels: SkylakeX)", "blis (libblis.so.4)"], file: nil))
        XCTAssertEqual(measured, [], "nothing measured that could not be kept")
    }

    /// OpenBLAS's kernel sets: timed alternately, five rounds, each kept at its best, the faster chosen (SkylakeX
    /// unless it is more than 3% slower) and cached per OpenBLAS version; the next choice reads the cache; a probe
    /// that fails stops the measurement and leaves OpenBLAS's own choice, nothing saved; nowhere to keep the rates
    /// gives SkylakeX unmeasured.
    func testOpenBLASKernelsAreChosenByAlternatedMeasurement() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kernels-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("keel").appendingPathComponent("openblas-kernels.json")
        var probed: [String] = []
        var rates = ["Haswell": [90.0, 103, 95], "SkylakeX": [99.0, 97, 98]]
        func probe(_ kernels: String) -> Double? {
            probed.append(kernels)
            return rates[kernels]![(probed.filter { $0 == kernels }.count - 1) % 3]
        }
        func choose(_ library: String = "OpenBLAS 0.3.21", file: URL?, probe: (String) -> Double?) -> (kernels: String, reason: String)? {
            OpenBLASKernels.choose(file: file, library: library, probe: probe)
        }
        let first = try XCTUnwrap(choose(file: file, probe: probe))
        XCTAssertEqual(probed, Array(repeating: ["Haswell", "SkylakeX"], count: 5).flatMap { $0 })
        XCTAssertEqual(first.kernels, "Haswell", "the best of each: 103 against 99, more than 3% faster")
        XCTAssertEqual(first.reason, "by measurement: Haswell 103.0, SkylakeX 99.0 GFLOP/s (saved to \(file.path))")
        let saved = try JSONDecoder().decode(BLASCalibration.self, from: Data(contentsOf: file))
        XCTAssertEqual(saved.rates, ["OpenBLAS 0.3.21 (kernels: Haswell)": 103, "OpenBLAS 0.3.21 (kernels: SkylakeX)": 99])
        XCTAssertTrue(saved.machine.contains("cpu family "), saved.machine)

        probed = []
        let second = try XCTUnwrap(choose(file: file, probe: probe))
        XCTAssertEqual(probed, [], "read from the cache")
        XCTAssertEqual(second.kernels, "Haswell")
        XCTAssertTrue(second.reason.hasSuffix("(cached in \(file.path))"), second.reason)

        rates = ["Haswell": [101, 101, 101], "SkylakeX": [99, 99, 99]]
        let otherVersion = try XCTUnwrap(choose("OpenBLAS 0.3.29", file: file, probe: probe))
        XCTAssertEqual(probed.count, 10, "another OpenBLAS: measured again")
        XCTAssertEqual(otherVersion.kernels, "SkylakeX", "Haswell only 2% faster: within the noise")

        try FileManager.default.removeItem(at: file)
        probed = []
        XCTAssertNil(choose(file: file) { kernels in
            probed.append(kernels)
            return kernels == "SkylakeX" && probed.count > 2 ? nil : 100
        }, "a probe failed: OpenBLAS's own choice")
        XCTAssertEqual(probed, ["Haswell", "SkylakeX", "Haswell", "SkylakeX"], "no probing after a failure")
        XCTAssertFalse(FileManager.default.fileExists(atPath: file.path), "nothing saved")

        probed = []
        let blocked = directory.appendingPathComponent("file-not-directory")
        try Data().write(to: blocked)
        for place in [nil, blocked.appendingPathComponent("keel/openblas-kernels.json")] {
            let nowhere = try XCTUnwrap(choose(file: place, probe: probe))
            XCTAssertEqual(nowhere.kernels, "SkylakeX")
            XCTAssertEqual(nowhere.reason, "without measurement (no cache directory to keep a measurement in): SkylakeX")
        }
        XCTAssertEqual(probed, [], "nothing measured that could not be kept")
    }
}
