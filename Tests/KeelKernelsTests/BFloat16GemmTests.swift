import CBFloat16
@testable import KeelKernels
import KeelCore
import XCTest

/// bf16 products against a float64 product of the same operands rounded to bf16 by this test's own
/// rounding, for every engine this CPU has — the portable one on every CPU.
final class BFloat16GemmTests: XCTestCase {
    /// Round to nearest even on the bit pattern, the definition the AMX and AVX512-BF16 conversions follow.
    private func roundedToBFloat16(_ x: Float) -> Float {
        let bits = x.bitPattern
        let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
        return Float(bitPattern: rounded)
    }

    /// The engines this CPU has, for a test to run on each; those it lacks are named as not run.
    private func engines(_ test: String = #function) throws -> [BFloat16Engine] {
        XCTAssertEqual(BFloat16Engine.available.last, .portable, "the portable engine is there on every CPU")
        let missing = BFloat16Engine.allCases.filter { !BFloat16Engine.available.contains($0) }
        if !missing.isEmpty {
            print("note: \(missing.map(\.rawValue).joined(separator: ", ")) not on this CPU: \(test) did not run there")
        }
        return BFloat16Engine.available
    }

    /// The engines found are the ones the CPU advertises to Linux (AMX also needs the kernel's permission,
    /// which Linux grants wherever it lists the flags), so engine-specific tests run wherever they can.
    func testFindsTheEnginesTheCPUAdvertises() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let line = try XCTUnwrap(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") })
        let flags = Set(line.split(separator: " ").map(String.init))
        let expected: [(BFloat16Engine, [String])] = [
            (.amx, ["amx_bf16", "amx_tile", "avx512_bf16"]), (.avx512, ["avx512f", "avx512bw", "avx512vl", "avx512_bf16"]),
            (.avx512f, ["avx2", "fma", "avx512f"]), (.avx2, ["avx2", "fma"]), (.portable, []), (.blas, []),
        ]
        for (engine, needs) in expected {
            XCTAssertEqual(BFloat16Engine.available.contains(engine), flags.isSuperset(of: needs), "\(engine) needs \(needs)")
        }
        print("bf16 engines on this CPU: \(BFloat16Engine.available.map(\.rawValue).joined(separator: ", "))")
    }

    /// Every engine that packs bf16 blocks packs into the same bytes (the portable one without AVX-512), for both
    /// operands, both storage orders, ragged edges, a slice of K, and the values rounding must treat specially.
    func testEveryEnginePacksTheSameBytes() throws {
        var stream = RandomStream(seed: 5)
        var values = random(70 * 45, &stream)
        values[0] = .nan; values[1] = .infinity; values[2] = -0; values[3] = Float(bitPattern: 0x0001_1234); values[4] = 3.3895314e38
        values[5] = Float(bitPattern: 0x3F80_8000); values[6] = Float(bitPattern: 0x3F81_8000)   // ties to even
        func packed(_ engine: BFloat16Engine, _ transposed: Int32, a: Bool) -> [UInt16] {
            let (rows, k) = (45, 70)
            var out = [UInt16](repeating: 0xFFFF, count: keel_bf16_packed_count(Int32(rows), Int32(k)))
            values.withUnsafeBufferPointer { v in
                if a {
                    keel_bf16_pack_a_slice(engine.native, transposed, Int32(rows), 40, v.baseAddress!, transposed == 0 ? 70 : 45,
                                           &out, Int32(k), 32, 0, 2)
                } else {
                    keel_bf16_pack_b(engine.native, transposed, Int32(k), Int32(rows), v.baseAddress!, transposed == 0 ? 45 : 70,
                                     &out, 0, 2)
                }
            }
            return out
        }
        let engines = try engines().filter { $0 != .portable && $0 != .blas }
        for transposed: Int32 in [0, 1] {
            for a in [true, false] {
                let reference = packed(.portable, transposed, a: a)
                XCTAssertTrue(reference.contains(0x7FC0) && reference.contains(0x3F80) && reference.contains(0x3F82))
                for engine in engines {
                    XCTAssertEqual(packed(engine, transposed, a: a), reference, "\(engine) A: \(a) transposed: \(transposed)")
                }
            }
        }
    }

    /// The portable engine sums each pair of k as AVX512-BF16's VDPBF16PS does, and the AVX2 and AVX-512F ones as the
    /// portable one does, so their products are the same floats (AMX sums in its own order, so it is only held to the
    /// reference below). Shapes cover ragged blocks, several 1,024-deep passes, groups of 3 rows running past the
    /// last block (AVX2; AVX-512F sums whole blocks in groups of 12, 12 and 8), runs of 8 row blocks, and k = 0 (C
    /// becomes beta · C).
    func testProductsEqualThePortableEnginesBitForBit() throws {
        let engines = try engines().filter { $0 != .amx && $0 != .portable && $0 != .blas }
        var stream = RandomStream(seed: 3)
        for (m, n, k) in [(45, 37, 1100), (70, 100, 2100), (3, 9, 33), (64, 40, 70), (300, 33, 40), (40, 33, 0)] {
            for (transA, transB) in [(Transpose.none, Transpose.transposed), (.transposed, .none)] {
                let a = random(max(1, m * k), &stream), b = random(max(1, k * n), &stream), start = random(m * n, &stream)
                func product(_ engine: BFloat16Engine) -> [UInt32] {
                    var c = start
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            bfloat16Gemm(m: m, n: n, k: k, alpha: 0.75, left: .matrix(transA, a.baseAddress!, ld: transA == .none ? k : m),
                                         right: .matrix(transB, b.baseAddress!, ld: transB == .none ? n : k), beta: 0.5, &c,
                                         ldc: n, engine: engine)
                        }
                    }
                    return c.map(\.bitPattern)
                }
                let reference = product(.portable)
                for engine in engines {
                    XCTAssertEqual(product(engine), reference, "\(engine) \(m)×\(n)×\(k) \(transA) \(transB)")
                }
            }
        }
    }

    /// The `blas` engine rounds as the packing does: each value becomes the bf16 the portable engine packs (NaN
    /// stays a quiet NaN, denormals become zeros of their sign, ties go to even, the largest floats round up to
    /// infinity), in the top half of an fp32 with zeros below; rows of a strided matrix, a ragged last vector, and
    /// nothing written past `columns`.
    func testRoundingForTheLibraryMatchesThePackedBytes() {
        var stream = RandomStream(seed: 23)
        let (rows, columns, ld, ldOut) = (3, 45, 50, 47)
        var values = random(rows * ld, &stream)
        values[0] = .nan; values[1] = .infinity; values[2] = -0; values[3] = Float(bitPattern: 0x0001_1234)
        values[4] = .greatestFiniteMagnitude; values[5] = Float(bitPattern: 0x3F80_8000); values[6] = Float(bitPattern: 0x3F81_8000)
        values[7] = Float(bitPattern: 0x8001_1234); values[8] = -.infinity
        // In plain C, and with AVX2 where the CPU has it: the same bits.
        let engines = keel_bf16_best_engine() == KEEL_BF16_NONE ? [KEEL_BF16_PORTABLE] : [KEEL_BF16_PORTABLE, KEEL_BF16_AVX2]
        if engines.count == 1 { print("note: no AVX2 here: the AVX2 rounding did not run") }
        for engine in engines {
            var rounded = [Float](repeating: 7, count: rows * ldOut)
            keel_bf16_round_rows(engine, Int32(rows), Int32(columns), values, Int32(ld), &rounded, Int32(ldOut))
            // The portable engine's packing of the same rows: row r's 32 bf16 of K step s at s·1,024 + r·32.
            var packed = [UInt16](repeating: 0, count: keel_bf16_packed_count(Int32(rows), Int32(columns)))
            keel_bf16_pack_a(KEEL_BF16_PORTABLE, 0, Int32(rows), Int32(columns), values, Int32(ld), &packed, 0, 1)
            for r in 0..<rows {
                for c in 0..<columns {
                    let bits = rounded[r * ldOut + c].bitPattern, expected = packed[(c / 32) * 1024 + r * 32 + c % 32]
                    XCTAssertEqual(bits, UInt32(expected) << 16, "\(engine): row \(r), column \(c): \(values[r * ld + c])")
                }
                XCTAssertEqual(rounded[r * ldOut + columns..<r * ldOut + ldOut], [7, 7], "row \(r): past the columns")
            }
            XCTAssertEqual(rounded[0].bitPattern, 0x7FC0_0000)
            XCTAssertEqual(rounded[3].bitPattern, 0)
            XCTAssertEqual(rounded[4], .infinity)
            XCTAssertEqual(rounded[5].bitPattern, 0x3F80_0000)
            XCTAssertEqual(rounded[6].bitPattern, 0x3F82_0000)
            XCTAssertEqual(rounded[7].bitPattern, 0x8000_0000)
        }
    }

    /// The `blas` engine is the fp32 library's product of the operands rounded to bf16 (by this test's own
    /// rounding) and stored densely, bit for bit: its products are the other engines' exact ones, only summed in the library's
    /// order. Every layout, strided operands, beta, a one-row product (a matrix-vector product in fp32) and k = 0.
    func testBLASEngineIsTheLibraryOnRoundedOperands() {
        var stream = RandomStream(seed: 29)
        for (m, n, k) in [(45, 37, 1100), (70, 100, 300), (1, 65, 40), (300, 33, 40), (40, 33, 0)] {
            for transA in [Transpose.none, .transposed] {
                for transB in [Transpose.none, .transposed] {
                    let lda = (transA == .none ? k : m) + 3, ldb = (transB == .none ? n : k) + 2, ldc = n + 1
                    let a = random(max(1, lda * (transA == .none ? m : k)), &stream)
                    let b = random(max(1, ldb * (transB == .none ? k : n)), &stream)
                    let start = random(m * ldc, &stream)
                    var engine = start, library = start
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            bfloat16Gemm(m: m, n: n, k: k, alpha: 0.75, left: .matrix(transA, a.baseAddress!, ld: lda),
                                         right: .matrix(transB, b.baseAddress!, ld: ldb), beta: 0.5, &engine, ldc: ldc,
                                         engine: .blas)
                        }
                    }
                    // The library gets the rounded operands laid out as the engine hands them over, dense as stored: a
                    // library may take another path, and sum in another order, for other row strides (BLIS does).
                    func dense(_ x: [Float], _ transpose: Transpose, rows: Int, columns: Int, ld: Int) -> (values: [Float], ld: Int) {
                        let stored = transpose.stored(rows: rows, columns: columns)
                        let values = (0..<stored.rows).flatMap { r in (0..<stored.columns).map { roundedToBFloat16(x[r * ld + $0]) } }
                        return (values, max(1, stored.columns))
                    }
                    let roundedA = dense(a, transA, rows: m, columns: k, ld: lda), roundedB = dense(b, transB, rows: k, columns: n, ld: ldb)
                    gemm(transA, transB, m: m, n: n, k: k, alpha: 0.75, roundedA.values, lda: roundedA.ld, roundedB.values,
                         ldb: roundedB.ld, beta: 0.5, &library, ldc: ldc)
                    XCTAssertEqual(engine.map(\.bitPattern), library.map(\.bitPattern), "\(m)×\(n)×\(k) \(transA) \(transB)")
                }
            }
        }
    }

    private func random(_ count: Int, _ stream: inout RandomStream) -> [Float] {
        (0..<count).map { _ in (stream.nextUniform() - 0.5) * 2 }
    }

    func testMatchesRoundedReferenceForEveryLayoutAndEdge() throws {
        var stream = RandomStream(seed: 11)
        // Sizes straddle the 32-row/column blocks, the 32-deep K steps, the 16-wide tiles, (k = 1,100) the
        // 1,024-deep passes whose partial sums are added into C, (m = 300) the 256-row bands blocks run in, and
        // k = 0 (C becomes beta · C).
        let shapes = [(37, 45, 70), (64, 64, 64), (5, 3, 1), (96, 33, 100), (1, 129, 31), (33, 40, 1100), (300, 70, 40), (33, 20, 0)]
        for engine in try engines() {
            for transA in [Transpose.none, .transposed] {
                for transB in [Transpose.none, .transposed] {
                    for (m, n, k) in shapes {
                        for beta: Float in [0, 1, 0.5] {
                            let lda = (transA == .none ? k : m) + 3, ldb = (transB == .none ? n : k) + 2, ldc = n + 5
                            let a = random(max(1, lda * (transA == .none ? m : k)), &stream)
                            let b = random(max(1, ldb * (transB == .none ? k : n)), &stream)
                            let original = random(ldc * m, &stream)
                            var c = original
                            // NaN in C must not leak through when beta is 0 (C is not read).
                            if beta == 0 { c = c.map { _ in .nan } }
                            a.withUnsafeBufferPointer { a in
                                b.withUnsafeBufferPointer { b in
                                    bfloat16Gemm(m: m, n: n, k: k, alpha: 1.5, left: .matrix(transA, a.baseAddress!, ld: lda),
                                                 right: .matrix(transB, b.baseAddress!, ld: ldb), beta: beta, &c, ldc: ldc,
                                                 engine: engine)
                                }
                            }
                            for i in 0..<m {
                                for j in 0..<n {
                                    var sum = 0.0, magnitude = 0.0
                                    for p in 0..<k {
                                        let x = Double(roundedToBFloat16(transA == .none ? a[i * lda + p] : a[p * lda + i]))
                                            * Double(roundedToBFloat16(transB == .none ? b[p * ldb + j] : b[j * ldb + p]))
                                        sum += x
                                        magnitude += abs(x)
                                    }
                                    let old = beta == 0 ? 0 : Double(beta * original[i * ldc + j])
                                    let expected = 1.5 * sum + old
                                    let error = abs(Double(c[i * ldc + j]) - expected) / (1.5 * magnitude + abs(old) + 1e-30)
                                    XCTAssertLessThan(error, 1e-6, "\(engine) \(transA) \(transB) \(m)×\(n)×\(k) beta \(beta) at \(i),\(j)")
                                }
                                // Columns past n belong to someone else.
                                for j in n..<ldc where beta != 0 {
                                    XCTAssertEqual(c[i * ldc + j], original[i * ldc + j])
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Operands really are bf16: 1 + 2⁻¹⁰ has no bf16 form and rounds to 1, so the product is exactly k.
    func testOperandsAreRoundedToBFloat16() throws {
        for engine in try engines() {
            let k = 40
            let a = [Float](repeating: 1 + 1.0 / 1024, count: k), b = [Float](repeating: 1, count: k)
            var c: [Float] = [0]
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    bfloat16Gemm(m: 1, n: 1, k: k, alpha: 1, left: .matrix(.none, a.baseAddress!, ld: k),
                                 right: .matrix(.none, b.baseAddress!, ld: 1), beta: 0, &c, ldc: 1, engine: engine)
                }
            }
            XCTAssertEqual(c[0], Float(k), "\(engine)")
        }
    }

    /// A weight packed once gives the same bits as packing it inside every product, in both of a linear
    /// layer's products and for both layouts.
    func testPackedWeightMatchesPackingPerProduct() throws {
        _ = try engines()
        var stream = RandomStream(seed: 5)
        let rows = 45
        for layout in [WeightLayout.inputMajor, .outputMajor] {
            let shape = LinearShape(inFeatures: 40, outFeatures: 70, layout: layout)
            let weight = random(40 * 70, &stream), input = random(rows * 40, &stream), dOut = random(rows * 70, &stream)
            let packed = PackedLinearWeight()
            shape.pack(weight, into: packed)
            var results: [[Float]] = []
            for pack in [nil, packed] {
                var out = [Float](repeating: 0, count: rows * 70), dInput = [Float](repeating: 0, count: rows * 40)
                var dWeight = [Float](repeating: 0, count: 40 * 70)
                shape.forward(&out, input, weight: weight, bias: nil, rows: rows, precision: .bfloat16, packed: pack)
                shape.backward(dInput: &dInput, accumulateInput: false, dWeight: &dWeight, dBias: nil, dOut: dOut,
                               input: input, weight: weight, rows: rows, precision: .bfloat16, packed: pack)
                results.append(out + dInput + dWeight)
            }
            XCTAssertEqual(results[0], results[1], "\(layout)")
        }
    }

    /// A left operand packed slice by slice of K (the output head's weight gradient, chunk by chunk) gives
    /// the same bits as the product that packs it whole, for both storage orders.
    func testLeftOperandPackedInSlicesMatchesWholeProduct() throws {
        _ = try engines()
        var stream = RandomStream(seed: 17)
        let m = 70, n = 45, k = 100
        let b = random(k * n, &stream), original = random(m * n, &stream)
        for transA in [Transpose.none, .transposed] {
            let a = random(m * k, &stream), lda = transA == .none ? k : m
            var whole = original, sliced = original
            gemm(transA, .none, m: m, n: n, k: k, a, lda: lda, b, beta: 1, &whole, precision: .bfloat16)
            let left = PackedLeftOperand()
            left.reserve(m: m, k: k)
            a.withUnsafeBufferPointer { a in
                for (offset, columns) in [(0, 64), (64, 36)] {  // the last slice ends part-way through a K step
                    let slice = a.baseAddress! + (transA == .none ? offset : offset * lda)
                    left.pack(transA, columns: columns, offset: offset, slice, lda: lda)
                }
            }
            gemm(packed: left, .none, n: n, b, beta: 1, &sliced)
            XCTAssertEqual(sliced, whole, "\(transA)")
        }
    }

    /// bf16 linear layers stay within bf16's rounding of the fp32 ones (relative error about 2⁻⁸ per
    /// operand, far less after summing many products), in both directions.
    func testLinearLayerCloseToFloat32() throws {
        _ = try engines()
        var stream = RandomStream(seed: 9)
        let rows = 64, i = 96, o = 80
        let shape = LinearShape(inFeatures: i, outFeatures: o, layout: .outputMajor)
        let weight = random(i * o, &stream), input = random(rows * i, &stream), dOut = random(rows * o, &stream)
        var results: [[Float]] = []
        for precision in MatrixPrecision.allCases {
            var out = [Float](repeating: 0, count: rows * o), dInput = [Float](repeating: 0, count: rows * i)
            var dWeight = [Float](repeating: 0, count: i * o)
            shape.forward(&out, input, weight: weight, bias: nil, rows: rows, precision: precision)
            shape.backward(dInput: &dInput, accumulateInput: false, dWeight: &dWeight, dBias: nil, dOut: dOut,
                           input: input, weight: weight, rows: rows, precision: precision)
            results.append(out + dInput + dWeight)
        }
        let difference = zip(results[0], results[1]).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let norm = results[0].map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        XCTAssertLessThan(difference / norm, 1e-2)
        XCTAssertGreaterThan(difference / norm, 0, "bf16 should differ from fp32 at all")
    }

    /// A linear layer's backward equals its two halves called apart, bit for bit, on the selected engine (the blas
    /// engine rounds dOut once for both products there), and its bias gradient sums dOut in fp32, not dOut rounded.
    /// Only the blas engine has a path of its own here: scripts/test.sh reruns this test with KEEL_BF16_ENGINE=blas.
    func testLinearBackwardEqualsItsHalvesAndSumsTheBiasInFloat32() throws {
        _ = try engines()
        if BFloat16Engine.selected != .blas {
            print("note: on the \(BFloat16Engine.selected) engine backward is its two halves; the blas rerun tests its own path")
        }
        var stream = RandomStream(seed: 21)
        let rows = 40, i = 48, o = 72
        for layout in [WeightLayout.inputMajor, .outputMajor] {
            let shape = LinearShape(inFeatures: i, outFeatures: o, layout: layout)
            let weight = random(i * o, &stream), input = random(rows * i, &stream), dOut = random(rows * o, &stream)
            let startingWeightGradient = random(i * o, &stream)
            var dInput = [Float](repeating: 0, count: rows * i), dWeight = startingWeightGradient
            var dBias = [Float](repeating: 0, count: o)
            shape.backward(dInput: &dInput, accumulateInput: false, dWeight: &dWeight, dBias: &dBias, dOut: dOut, input: input,
                           weight: weight, rows: rows, precision: .bfloat16)
            var halfInput = [Float](repeating: 0, count: rows * i), halfWeight = startingWeightGradient
            var halfBias = [Float](repeating: 0, count: o)
            shape.inputGradient(&halfInput, accumulate: false, dOut: dOut, weight: weight, rows: rows, precision: .bfloat16)
            shape.weightGradient(&halfWeight, dBias: &halfBias, dOut: dOut, input: input, rows: rows, precision: .bfloat16)
            XCTAssertEqual(dInput, halfInput, "\(layout)")
            XCTAssertEqual(dWeight, halfWeight, "\(layout)")
            var sums = [Float](repeating: 0, count: o)
            for r in 0..<rows { for c in 0..<o { sums[c] += dOut[r * o + c] } }
            XCTAssertEqual(dBias, sums, "\(layout)")
            XCTAssertEqual(halfBias, sums, "\(layout)")
        }
    }

    /// The kernels that write a product's operand write it rounded to bf16 when asked (each element this test's own
    /// rounding of what they write unasked), across row and block edges; and they are asked exactly where the products
    /// read such operands as they are: in bf16 on the blas engine.
    func testProducersRoundTheirOutputsWhenAsked() {
        var stream = RandomStream(seed: 23)
        let rows = 5, c = 37, count = 10_001  // a row width and a count that are not whole vectors or 4,096-blocks
        let x = random(rows * c, &stream), weight = random(c, &stream), bias = random(c, &stream)
        let wide = random(count, &stream), gateUp = random(rows * 2 * c, &stream)
        func both(_ size: Int, _ kernel: (UnsafeMutablePointer<Float>, Bool) -> Void) -> (plain: [Float], rounded: [Float]) {
            var plain = [Float](repeating: .nan, count: size), rounded = plain
            kernel(&plain, false)
            kernel(&rounded, true)
            return (plain, rounded)
        }
        var mean = [Float](repeating: 0, count: rows), rstd = mean
        let outputs: [(String, (plain: [Float], rounded: [Float]))] = [
            ("LayerNorm", both(rows * c) {
                LayerNorm.forward($0, mean: &mean, rstd: &rstd, x, weight: weight, bias: bias, rows: rows, columns: c,
                                  epsilon: 1e-5, roundingOutput: $1)
            }),
            ("RMSNorm", both(rows * c) {
                RMSNorm.forward($0, rstd: &rstd, x, weight: weight, rows: rows, columns: c, epsilon: 1e-5, roundingOutput: $1)
            }),
            ("GELU", both(count) { GELU.forward($0, wide, count: count, roundingOutput: $1) }),
            ("SwiGLU", both(rows * c) { SwiGLU.forward($0, gateUp, rows: rows, width: c, roundingOutput: $1) }),
        ]
        for (name, output) in outputs {
            XCTAssertEqual(output.rounded, output.plain.map(roundedToBFloat16), name)
            XCTAssertNotEqual(output.rounded, output.plain, "\(name): the test's values are not bf16 already")
        }
        XCTAssertEqual(MatrixPrecision.bfloat16.readsRoundedOperands, BFloat16Engine.selected == .blas)
        XCTAssertFalse(MatrixPrecision.float32.readsRoundedOperands)
    }

    /// A linear layer told that its input holds bf16 values gives the bits it gives when it rounds that input itself,
    /// forward and in both backward halves, for both weight layouts; only on the blas engine does it then skip the
    /// rounding (a flag on the wrong operand would leave the weight or ∂loss/∂output unrounded there).
    func testLinearReadsARoundedInputAsItIs() throws {
        _ = try engines()
        var stream = RandomStream(seed: 29)
        let rows = 40, i = 48, o = 72
        for layout in [WeightLayout.inputMajor, .outputMajor] {
            let shape = LinearShape(inFeatures: i, outFeatures: o, layout: layout)
            let weight = random(i * o, &stream), bias = random(o, &stream), dOut = random(rows * o, &stream)
            let input = random(rows * i, &stream).map(roundedToBFloat16), start = random(i * o, &stream)
            func run(_ inputIsRounded: Bool) -> [[Float]] {
                var out = [Float](repeating: 0, count: rows * o), dInput = [Float](repeating: 0, count: rows * i)
                var dWeight = start, dBias = [Float](repeating: 0, count: o), deferred = start
                shape.forward(&out, input, inputIsRounded: inputIsRounded, weight: weight, bias: bias, rows: rows,
                              precision: .bfloat16)
                shape.backward(dInput: &dInput, accumulateInput: false, dWeight: &dWeight, dBias: &dBias, dOut: dOut,
                               input: input, inputIsRounded: inputIsRounded, weight: weight, rows: rows, precision: .bfloat16)
                shape.weightGradient(&deferred, dBias: nil, dOut: dOut, input: input, inputIsRounded: inputIsRounded,
                                     rows: rows, precision: .bfloat16)
                return [out, dInput, dWeight, dBias, deferred]
            }
            XCTAssertEqual(run(true), run(false), "\(layout)")
        }
    }

    /// bf16 attention (scores, outputs and all five backward products on bf16 operands) stays within bf16's
    /// rounding of fp32 attention, with several query blocks, grouped heads, a head size that is not a whole K
    /// step, and with and without documents, and gives the same bits on every run.
    func testAttentionCloseToFloat32() throws {
        _ = try engines()
        var stream = RandomStream(seed: 13)
        let batch = 2, length = 150, heads = 4, kvHeads = 2, d = 24
        let shape = { (precision: MatrixPrecision) in
            CausalAttention(batch: batch, length: length, heads: heads, kvHeads: kvHeads, headDim: d, precision: precision)
        }
        let n = batch * length, stride = shape(.float32).rowStride
        let qkv = random(n * stride, &stream), dOut = random(n * heads * d, &stream)
        // Each token's document start: the first sequence has documents from 0, 37 and 100, the second from 0 and 64.
        let documents = (0..<n).map { token -> Int32 in
            let (b, i) = (token / length, token % length)
            return Int32((b == 0 ? [0, 37, 100] : [0, 64]).last { $0 <= i }!)
        }
        func run(_ precision: MatrixPrecision, documents: [Int32]?) -> (out: [Float], dQKV: [Float]) {
            let attention = shape(precision)
            var out = [Float](repeating: 0, count: n * heads * d), dQKV = [Float](repeating: .nan, count: n * stride)
            var lse = [Float](repeating: 0, count: attention.statsCount)
            var scratch = [Float](repeating: 0, count: attention.scratchCount)
            documents.withOptionalBufferPointer { documents in
                attention.forward(&out, lse: &lse, qkv: qkv, scratch: &scratch, documents: documents)
                attention.backward(dQKV: &dQKV, dOut: dOut, out: out, lse: lse, qkv: qkv, scratch: &scratch,
                                   documents: documents)
            }
            return (out, dQKV)
        }
        func relativeDistance(_ x: [Float], _ y: [Float]) -> Double {
            let difference = zip(x, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            return difference / x.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        }
        for documents in [nil, documents] {
            let float32 = run(.float32, documents: documents), bfloat16 = run(.bfloat16, documents: documents)
            for (name, x, y) in [("out", float32.out, bfloat16.out), ("dQKV", float32.dQKV, bfloat16.dQKV)] {
                XCTAssertLessThan(relativeDistance(x, y), 2e-2, "\(name), documents: \(documents != nil)")
                XCTAssertGreaterThan(relativeDistance(x, y), 0, "\(name): bf16 should differ from fp32 at all")
            }
            let again = run(.bfloat16, documents: documents)
            XCTAssertEqual(again.out, bfloat16.out)
            XCTAssertEqual(again.dQKV, bfloat16.dQKV)
        }
    }
}

private extension Optional where Wrapped == [Int32] {
    /// Calls `body` with the array's base address, or nil.
    func withOptionalBufferPointer(_ body: (UnsafePointer<Int32>?) -> Void) {
        guard let array = self else { return body(nil) }
        array.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
