import CQuant
import KeelKernels
import XCTest

/// A one-row product (a generation step) takes the matrix-vector path: the same values as the product's definition.
final class GemmSingleRowTests: XCTestCase {
    func testOneRowProductsEqualTheirDefinition() {
        var random = SystemRandomNumberGenerator()
        let (n, k) = (700, 129)
        let a = (0..<k).map { _ in Float.random(in: -1...1, using: &random) }
        let b = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &random) }
        let initial = (0..<n).map { _ in Float.random(in: -1...1, using: &random) }
        for transB in [Transpose.none, .transposed] {
            var c = initial
            gemm(.none, transB, m: 1, n: n, k: k, alpha: 0.5, a, b, beta: 2, &c)
            for j in 0..<n {
                var sum = 0.0
                for i in 0..<k { sum += Double(a[i]) * Double(transB == .none ? b[i * n + j] : b[j * k + i]) }
                let expected = 0.5 * sum + 2 * Double(initial[j])
                XCTAssertEqual(Double(c[j]), expected, accuracy: 1e-4, "\(transB), column \(j)")
            }
        }
    }

    /// Keel's fp32 matrix-vector kernel gives the scalar code's bits on every engine this CPU has (rows of 32 · 5 + 7
    /// values: whole groups of 32 lanes and a tail).
    func testTheMatrixVectorKernelGivesTheSameBitsOnEveryEngine() {
        var random = SystemRandomNumberGenerator()
        let (rows, k, ldw) = (13, 167, 170)
        let w = (0..<(rows * ldw)).map { _ in Float.random(in: -1...1, using: &random) }
        let x = (0..<k).map { _ in Float.random(in: -1...1, using: &random) }
        func product(_ engine: QuantizedDotEngine) -> [UInt32] {
            var out = [Float](repeating: 0, count: rows)
            keel_f32_matvec(keel_qdot_engine(UInt32(engine.rawValue)), Int32(rows), Int32(k), w, ldw, x, &out)
            return out.map(\.bitPattern)
        }
        let reference = product(.scalar)
        for engine in QuantizedDotEngine.allCases.dropFirst() {
            guard engine.isAvailable else {
                print("note: \(engine) is not on this CPU; its matrix-vector products were not run")
                continue
            }
            XCTAssertEqual(product(engine), reference, "\(engine)")
        }
    }
}
