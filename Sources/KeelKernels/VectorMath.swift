/// Vectorised elementwise helpers shared by the kernels.
///
/// Swift neither fuses `a * b + c` nor reassociates reductions, so these use `SIMD16<Float>` with explicit
/// `addingProduct` and independent accumulators (see docs/platform.md). `exp16` replaces libm's `expf`,
/// which is far too slow to call per element.

import KeelCore

public typealias Float16x = SIMD16<Float>

@inline(__always)
func load16(_ pointer: UnsafePointer<Float>) -> Float16x {
    UnsafeRawPointer(pointer).loadUnaligned(as: Float16x.self)
}

@inline(__always)
func store16(_ value: Float16x, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Float16x.self)
}

/// e^x with a relative error below 2e-7 for x in [-87, 88] (Cody–Waite range reduction, degree-7 Taylor).
///
/// Written with `pointwiseMin`/`pointwiseMax` and the 1.5·2²³ rounding trick because the generic
/// `clamped` and `rounded` on SIMD types compile to per-lane calls.
@inline(__always)
func exp16(_ x: Float16x) -> Float16x {
    let clamped = pointwiseMin(pointwiseMax(x, Float16x(repeating: -87.0)), Float16x(repeating: 88.0))
    // Adding 1.5·2²³ rounds to the nearest integer and leaves n + 127 in the low mantissa bits.
    let magic = Float16x(repeating: 12_582_912 + 127)
    let biased = magic.addingProduct(clamped, Float16x(repeating: 1.442_695_04))
    let n = biased - magic
    var r = clamped.addingProduct(n, Float16x(repeating: -0.693_145_751_953_125))
    r = r.addingProduct(n, Float16x(repeating: -1.428_606_765_330_187e-6))
    var p = Float16x(repeating: 1.0 / 5040)
    p = Float16x(repeating: 1.0 / 720).addingProduct(p, r)
    p = Float16x(repeating: 1.0 / 120).addingProduct(p, r)
    p = Float16x(repeating: 1.0 / 24).addingProduct(p, r)
    p = Float16x(repeating: 1.0 / 6).addingProduct(p, r)
    p = Float16x(repeating: 0.5).addingProduct(p, r)
    p = Float16x(repeating: 1).addingProduct(p, r)
    p = Float16x(repeating: 1).addingProduct(p, r)
    let exponent = (unsafeBitCast(biased, to: SIMD16<Int32>.self) &- 0x4B40_0000) &<< 23
    return p * unsafeBitCast(exponent, to: Float16x.self)
}

/// tanh(x), computed from `exp16`; absolute error below 3e-7.
@inline(__always)
func tanh16(_ x: Float16x) -> Float16x {
    let e = exp16(2 * pointwiseMin(pointwiseMax(x, Float16x(repeating: -10)), Float16x(repeating: 10)))
    return (e - 1) / (e + 1)
}

/// Scalar e^x through the same approximation as `exp16`, so tails match vector bodies exactly.
@inline(__always)
func expScalar(_ x: Float) -> Float {
    exp16(Float16x(repeating: x))[0]
}

/// The sum of the 16 lanes (the generic `SIMD.sum()` is not specialised and costs a call per use).
@inline(__always)
func horizontalSum(_ v: Float16x) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

/// The largest of the 16 lanes, lane by lane (`pointwiseMax` on the 8- and 4-lane halves compiled to calls).
@inline(__always)
func horizontalMax(_ v: Float16x) -> Float {
    var maximum = v[0]
    for lane in 1..<16 where v[lane] > maximum { maximum = v[lane] }
    return maximum
}

/// The larger of a and b in each lane (a where either is NaN, as `pointwiseMax` gives): a compare and a blend, where
/// `pointwiseMax` on a running maximum compiled to lane-by-lane compares through memory.
@inline(__always)
func larger(_ a: Float16x, _ b: Float16x) -> Float16x {
    a.replacing(with: b, where: b .> a)
}

/// Σ a[i]·b[i] for i in 0..<n, with four independent vector accumulators.
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var s0 = Float16x(), s1 = Float16x()
    var i = 0
    while i + 32 <= n {
        s0 = s0.addingProduct(load16(a + i), load16(b + i))
        s1 = s1.addingProduct(load16(a + i + 16), load16(b + i + 16))
        i += 32
    }
    if i + 16 <= n {
        s0 = s0.addingProduct(load16(a + i), load16(b + i))
        i += 16
    }
    var total = horizontalSum(s0 + s1)
    while i < n {
        total += a[i] * b[i]
        i += 1
    }
    return total
}

/// y[i] += alpha · x[i] for i in 0..<n.
@inline(__always)
public func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let a = Float16x(repeating: alpha)
    var i = 0
    while i + 16 <= n {
        store16(load16(y + i).addingProduct(a, load16(x + i)), y + i)
        i += 16
    }
    while i < n {
        y[i] += alpha * x[i]
        i += 1
    }
}

/// y[i] += x[i] for i in 0..<n.
@inline(__always)
public func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(load16(y + i) + load16(x + i), y + i)
        i += 16
    }
    while i < n {
        y[i] += x[i]
        i += 1
    }
}

/// y[i] += x[i] for i in 0..<count, on the shared pool (residual connections).
public func addInPlace(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    parallelBlocks(count) { start, end in add(x + start, into: y + start, end - start) }
}

/// `values` (`rows` × `columns`, row-major) transposed: `columns` × `rows`. (GPT-2 stores its weights [in, out]; GGUF
/// files and quantized products take rows of outputs.)
public func transposed(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int) -> [Float] {
    precondition(values.count == rows * columns, "\(values.count) values are not \(rows) × \(columns)")
    var result = [Float](repeating: 0, count: values.count)
    for row in 0..<rows { for column in 0..<columns { result[column * rows + row] = values[row * columns + column] } }
    return result
}

/// `values` (`rows` × `columns`, row-major) transposed.
public func transposed(_ values: [Float], rows: Int, columns: Int) -> [Float] {
    values.withUnsafeBufferPointer { transposed($0, rows: rows, columns: columns) }
}
