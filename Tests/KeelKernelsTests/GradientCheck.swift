import KeelCore
import XCTest

/// Finite-difference gradient checking for kernels: the loss is Σ w·out for fixed random weights w, so
/// the analytic input gradient is the kernel's backward pass applied to dOut = w.
struct GradientCheck {
    var random = RandomStream(seed: 7, key: 1)

    /// A buffer of `count` normal samples scaled by `scale`.
    mutating func buffer(_ count: Int, scale: Float = 1, offset: Float = 0) -> FloatBuffer {
        let b = FloatBuffer(count: count)
        for i in 0..<count { b.pointer[i] = random.nextNormal() * scale + offset }
        return b
    }

    /// Σ w[i]·out[i] in Double.
    static func weightedSum(_ out: FloatBuffer, _ w: FloatBuffer) -> Double {
        var s = 0.0
        for i in 0..<out.count { s += Double(out.pointer[i]) * Double(w.pointer[i]) }
        return s
    }

    /// Compares `analytic[i]` with the central difference of `loss` in `input[i]`, for every index (or a
    /// spread-out sample of at most `samples`).
    static func assertMatches(
        _ analytic: FloatBuffer, input: FloatBuffer, epsilon: Float = 1e-2, tolerance: Double = 2e-3,
        samples: Int = 64, _ label: String, loss: () -> Double, file: StaticString = #filePath, line: UInt = #line
    ) {
        let stride = max(1, input.count / samples)
        var worst = 0.0
        var scaleOfGradient = 0.0
        for i in 0..<analytic.count { scaleOfGradient = max(scaleOfGradient, abs(Double(analytic.pointer[i]))) }
        XCTAssertGreaterThan(scaleOfGradient, 0, "\(label): gradient is identically zero", file: file, line: line)
        for i in Swift.stride(from: 0, to: input.count, by: stride) {
            let saved = input.pointer[i]
            input.pointer[i] = saved + epsilon
            let plus = loss()
            input.pointer[i] = saved - epsilon
            let minus = loss()
            input.pointer[i] = saved
            let numeric = (plus - minus) / (2 * Double(epsilon))
            let error = abs(numeric - Double(analytic.pointer[i])) / max(scaleOfGradient, 1e-6)
            worst = max(worst, error)
        }
        XCTAssertLessThan(worst, tolerance, "\(label): worst gradient error \(worst) relative to max |grad|",
                          file: file, line: line)
    }
}
