import CQuant
import Foundation
import KeelCore
import KeelKernels
import XCTest

/// llama.cpp's block formats: Keel's bytes and values against gguf-py's and ggml's reference, and its dot
/// products on every engine against the scalar reference.
final class QuantizedMatrixTests: XCTestCase {
    private static let reference = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Reference")

    /// Values that exercise the formats: normal ones, tiny ones, ties of the rounding (multiples of 1/4), zero
    /// blocks and large ones, in rows of 256.
    private func testValues(rows: Int = 64) -> [Float] {
        var random = SystemRandomNumberGenerator()
        var values: [Float] = []
        for row in 0..<rows {
            for column in 0..<256 {
                switch row % 5 {
                case 0: values.append(Float.random(in: -1...1, using: &random) * (column % 7 == 0 ? 4 : 1))
                case 1: values.append(Float.random(in: -1e-6...1e-6, using: &random))
                case 2: values.append(Float(Int.random(in: -8...7, using: &random)) / 4)
                case 3: values.append(column < 128 ? 0 : Float.random(in: 0...3, using: &random))
                default: values.append(Float.random(in: -3e4...3e4, using: &random))
                }
            }
        }
        return values
    }

    private func temporaryFile(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-quant-\(UUID())-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Runs Tests/Reference/gguf_quants.py (gguf-py 0.19.0).
    private func ggufPy(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.reference.appendingPathComponent("gguf_quants.py").path] + arguments
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "gguf_quants.py \(arguments.joined(separator: " ")) failed (pip install gguf==0.19.0)")
    }

    private func floats(_ data: Data) -> [Float] {
        data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// A row a format would hold as infinities (f16 stores every value in half precision, Q4_1 each block's minimum;
    /// the others' half-precision scales reach further) is an error naming the row; the formats that reach further
    /// quantize it.
    func testValuesBeyondHalfPrecisionAreRefusedWhereTheyWouldBeInfinite() throws {
        var values = [Float](repeating: 0.5, count: 2 * 256)
        values[300] = -70_000
        for format in [QuantizationFormat.f16, .q4_1] {
            XCTAssertThrowsError(try QuantizedMatrix(quantizing: values, rows: 2, columns: 256, format: format)) {
                XCTAssertEqual("\($0)", "\(format.rawValue) cannot hold row 1 (largest magnitude 70000.0): its half-precision "
                               + (format == .f16 ? "values" : "block scales") + " would be infinite; q8_0 holds magnitudes up to about 8.3 million")
            }
        }
        values[300] = -1e6  // beyond Q4_0's scales (a block's largest magnitude over 8)
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: values, rows: 2, columns: 256, format: .q4_0)) {
            XCTAssertTrue("\($0)".hasPrefix("q4_0 cannot hold row 1"), "\($0)")
        }
        XCTAssertNoThrow(try QuantizedMatrix(quantizing: values, rows: 2, columns: 256, format: .q5_0))  // over 16: 62,500
        values[300] = -70_000
        for format in [QuantizationFormat.q8_0, .q4_0, .q5_0, .q4_K] {
            let matrix = try QuantizedMatrix(quantizing: values, rows: 2, columns: 256, format: format)
            XCTAssertTrue(matrix.dequantized().allSatisfy(\.isFinite), "\(format)")
        }
    }

    func testQuantizedBytesEqualGgufPy() throws {
        let values = testValues()
        let input = temporaryFile("values.f32"), output = temporaryFile("blocks.bin")
        try values.withUnsafeBytes { try Data($0).write(to: input) }
        for format in [QuantizationFormat.f16, .q8_0, .q4_0, .q4_1, .q5_0] {
            let matrix = try QuantizedMatrix(quantizing: values, rows: values.count / 256, columns: 256, format: format)
            try ggufPy(["quantize", format.rawValue, input.path, output.path])
            let theirs = [UInt8](try Data(contentsOf: output))
            XCTAssertEqual(theirs.count, matrix.bytes.count, format.rawValue)
            let differing = zip(theirs, matrix.bytes).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            XCTAssertNil(differing, "\(format.rawValue): first differing byte at \(differing ?? -1) of \(theirs.count)")
        }
    }

    func testDequantizedValuesEqualGgufPy() throws {
        let values = testValues()
        let blocks = temporaryFile("blocks.bin"), output = temporaryFile("values.f32")
        for format in QuantizationFormat.allCases {
            let matrix = try QuantizedMatrix(quantizing: values, rows: values.count / 256, columns: 256, format: format)
            try Data(matrix.bytes).write(to: blocks)
            try ggufPy(["dequantize", format.rawValue, blocks.path, output.path])
            let theirs = floats(try Data(contentsOf: output)), ours = matrix.dequantized()
            XCTAssertEqual(theirs.count, ours.count, format.rawValue)
            XCTAssertTrue(zip(theirs, ours).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(format.rawValue): values differ")
        }
    }

    /// Formats of llama.cpp's Q4_K_M and Q5 files (all but Q5_0 only read): random blocks — every bit pattern of the
    /// fifth bits — with sane fp16 scales dequantize to gguf-py's values, to the bit.
    func testReadOnlyFormatsDequantizeAsGgufPy() throws {
        var random = SystemRandomNumberGenerator()
        let blocks = temporaryFile("blocks.bin"), output = temporaryFile("values.f32")
        // ggml type, bytes per 256 values, offsets of the fp16 scales in a block and the block's size.
        let formats: [(name: String, type: Int, rowBytes: Int, scales: [Int], block: Int)] = [
            ("q5_0", 6, 176, [0], 22), ("q5_1", 7, 192, [0, 2], 24), ("q5_k", 13, 176, [0, 2], 176), ("q6_k", 14, 210, [208], 210),
        ]
        for format in formats {
            let rows = 12
            var bytes = (0..<rows * format.rowBytes).map { _ in UInt8.random(in: 0...255, using: &random) }
            for start in stride(from: 0, to: bytes.count, by: format.block) {
                for offset in format.scales {
                    let scale = Float16(Float.random(in: 0.001...0.05, using: &random)).bitPattern
                    bytes[start + offset] = UInt8(scale & 0xFF)
                    bytes[start + offset + 1] = UInt8(scale >> 8)
                }
            }
            try Data(bytes).write(to: blocks)
            try ggufPy(["dequantize", format.name, blocks.path, output.path])
            let theirs = floats(try Data(contentsOf: output))
            let ours = try XCTUnwrap(QuantizedMatrix.dequantized(ggmlType: format.type, rows: rows, columns: 256, bytes: Data(bytes)))
            XCTAssertEqual(theirs.count, ours.count, format.name)
            XCTAssertTrue(zip(theirs, ours).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(format.name): values differ")
        }
        XCTAssertNil(QuantizedMatrix.dequantized(ggmlType: 10, rows: 1, columns: 256, bytes: Data(count: 84)), "Q2_K is not read")
    }

    /// The 32,768 values of Tests/Reference/quant/README.md: a 64-bit LCG's multiples of 1/8192 in [−4, 4), every
    /// fourth block of 256 divided by 1,000 and every fourth rounded to quarters.
    static func referenceValues() -> [Float] {
        var state: UInt64 = 20_261_204
        return (0..<128 * 256).map { index in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            var value = Float(Int((state >> 40) & 0xFFFF) - 32768) / 8192
            if index / 256 % 4 == 1 { value /= 1000 }
            if index / 256 % 4 == 2 { value = (value * 4).rounded(.toNearestOrEven) / 4 }
            return value
        }
    }

    /// gguf-py has no Q4_K quantizer: the bytes come from ggml's own reference quantizer (Tests/Reference/quant).
    func testQ4KBytesEqualGgmlReference() throws {
        let expected = [UInt8](try Data(contentsOf: Self.reference.appendingPathComponent("quant/q4_k_reference.bin")))
        let matrix = try QuantizedMatrix(quantizing: Self.referenceValues(), rows: 128, columns: 256, format: .q4_K)
        XCTAssertEqual(matrix.bytes.count, expected.count)
        let differing = zip(matrix.bytes, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        XCTAssertNil(differing, "first differing byte at \(differing ?? -1), in block \((differing ?? 0) / 144)")
    }

    /// Activations round to bytes half away from zero (ggml's roundf), ties and the values just beside them included:
    /// a block whose largest magnitude is 127 has scale 1, so each value is rounded as it stands; Swift's own rounding
    /// is the reference.
    func testActivationBytesRoundHalfAwayFromZero() throws {
        let ties: [Float] = [0.5, 1.5, 2.5, Float(0.5).nextDown, Float(0.5).nextUp, Float(2.5).nextDown, 126.5, Float(126.5).nextDown, 0.25, 1e-3, 0]
        var values: [Float] = [127]
        for value in ties where values.count < 32 { values.append(value) }
        for value in ties where values.count < 32 && value != 0 { values.append(-value) }
        while values.count < 32 { values.append(Float(values.count) / 3) }
        let matrix = try QuantizedMatrix(quantizing: [Float](repeating: 1, count: 32), rows: 1, columns: 32, format: .q8_0)
        let bytes = matrix.activations(values, count: 1)
        let expected = values.map { Int8($0.rounded(.toNearestOrAwayFromZero)) }
        XCTAssertEqual(bytes[2...].map { Int8(bitPattern: $0) }, expected)
    }

    /// Each engine this CPU has gives the scalar reference's bits; those it lacks are named as not run.
    func testEveryEngineGivesTheReferenceBits() throws {
        var random = SystemRandomNumberGenerator()
        // 352 columns: eleven blocks of 32, so kernels that take eight blocks at a time also run their tail.
        for (rows, columns) in [(37, 512), (8, 2048), (3, 256 * 9), (13, 352)] {
            let weights = (0..<rows * columns).map { _ in Float.random(in: -1...1, using: &random) }
            let vector = (0..<columns).map { _ in Float.random(in: -2...2, using: &random) }
            for format in QuantizationFormat.allCases where columns % format.blockValues == 0 {
                let matrix = try QuantizedMatrix(quantizing: weights, rows: rows, columns: columns, format: format)
                let reference = matrix.multiply(vector, engine: .scalar)
                for engine in QuantizedDotEngine.allCases.dropFirst() {
                    guard engine.isAvailable else {
                        print("note: \(engine) is not on this CPU; its dot products were not run")
                        continue
                    }
                    let result = matrix.multiply(vector, engine: engine)
                    XCTAssertEqual(result.map(\.bitPattern), reference.map(\.bitPattern), "\(format.rawValue) on \(engine), \(rows) × \(columns)")
                }
            }
        }
    }

    /// Q8_0, Q4_0, Q5_0 and Q4_K rows are held interleaved eight at a time (19 rows: two groups and three rows after
    /// them): the bytes a matrix gives back are the bytes it was given, each row's values (an embedding lookup) are
    /// that row's, and each row's product is the scalar dot product of its own ggml row, to the bit.
    func testInterleavedRowsGiveBackTheirBytesValuesAndProducts() throws {
        var random = SystemRandomNumberGenerator()
        let rows = 19, columns = 512
        for format in [QuantizationFormat.q8_0, .q4_0, .q5_0, .q4_K] {
            // Random bytes, not a quantizer's: every bit of every field must come back (Q4_K's packed 6-bit scales).
            let given = (0..<rows * format.rowBytes(columns: columns)).map { _ in UInt8.random(in: 0...255, using: &random) }
            let matrix = try QuantizedMatrix(format: format, rows: rows, columns: columns, bytes: given)
            XCTAssertEqual(matrix.bytes, given, format.rawValue)
            let rowBytes = format.rowBytes(columns: columns)
            for row in 0..<rows {
                var expected = [Float](repeating: 0, count: columns), found = expected
                given.withUnsafeBytes { keel_dequantize_row(format.ggmlQuantType, $0.baseAddress! + row * rowBytes, &expected, Int64(columns)) }
                matrix.dequantizeRow(row, into: &found)
                XCTAssertEqual(found.map(\.bitPattern), expected.map(\.bitPattern), "\(format.rawValue) row \(row)")
            }
            // Products of a quantizer's rows (finite scales) against the scalar dot of each ggml row.
            let weights = (0..<rows * columns).map { _ in Float.random(in: -1...1, using: &random) }
            let vector = (0..<columns).map { _ in Float.random(in: -2...2, using: &random) }
            let quantized = try QuantizedMatrix(quantizing: weights, rows: rows, columns: columns, format: format)
            let activations = quantized.activations(vector, count: 1), bytes = quantized.bytes
            let expected = (0..<rows).map { row in
                bytes.withUnsafeBytes { weights in
                    activations.withUnsafeBytes {
                        keel_quant_dot(KEEL_QDOT_SCALAR, format.ggmlQuantType, Int32(columns), weights.baseAddress! + row * rowBytes,
                                       $0.baseAddress!)
                    }
                }
            }
            for engine in QuantizedDotEngine.allCases where engine.isAvailable {
                XCTAssertEqual(quantized.multiply(vector, engine: engine).map(\.bitPattern), expected.map(\.bitPattern),
                               "\(format.rawValue) on \(engine)")
            }
        }
    }

    /// A product with several input rows gives each row's vector product, bit for bit, on every engine — through
    /// the kernels that take several input rows at once (rows of 1,280 values: in two ranges of blocks; for F16 with
    /// AVX-512, rows of up to 1,024 values in tiles of 4 × 4 and wider ones in tiles of 2 × 3, each shape's partial
    /// tiles among these counts on two threads, whatever the machine has) and the row-by-row ones; F16 without
    /// AVX-512 within fp32 rounding (its rows go through sgemm).
    func testMatrixProductsAreRowByRowProducts() throws {
        let pool = ThreadPool(threadCount: 2)
        var random = SystemRandomNumberGenerator()
        for (rows, columns, count) in [(19, 512, 21), (6, 352, 9), (11, 1280, 6), (10, 64, 7), (7, 96, 6), (5, 1056, 5)] {
            let weights = (0..<rows * columns).map { _ in Float.random(in: -1...1, using: &random) }
            let inputs = (0..<count * columns).map { _ in Float.random(in: -1...1, using: &random) }
            for format in QuantizationFormat.allCases where columns % format.blockValues == 0 {
                let matrix = try QuantizedMatrix(quantizing: weights, rows: rows, columns: columns, format: format)
                for engine in QuantizedDotEngine.allCases where engine.isAvailable {
                    var product = [Float](repeating: 0, count: count * rows)
                    inputs.withUnsafeBufferPointer { input in
                        product.withUnsafeMutableBufferPointer {
                            matrix.multiply(input.baseAddress!, count: count, into: $0.baseAddress!, engine: engine, pool: pool)
                        }
                    }
                    for t in 0..<count {
                        let single = matrix.multiply(Array(inputs[(t * columns)..<((t + 1) * columns)]), engine: .scalar)
                        let row = Array(product[(t * rows)..<((t + 1) * rows)])
                        if format == .f16 && engine != .avx512VNNI {
                            // Several rows of halves run as fp32 matrix products without AVX-512: the same products,
                            // another order.
                            let scale = single.map(abs).max()!
                            XCTAssertLessThan(zip(row, single).map { abs($0 - $1) }.max()!, 1e-5 * scale, "f16 on \(engine), row \(t)")
                        } else {
                            XCTAssertEqual(row.map(\.bitPattern), single.map(\.bitPattern), "\(format.rawValue) on \(engine), row \(t)")
                        }
                    }
                }
            }
        }
    }

    /// Parts stacked (q, k and v of a GGUF file) give each part's own product in their rows of the output, bit for
    /// bit, on every engine: a prompt in F16 takes another path for them (its halves converted once, all the parts'
    /// rows in one loop).
    func testStackedPartsGiveEachPartsProduct() throws {
        var random = SystemRandomNumberGenerator()
        let columns = 96, count = 6, partRows = [5, 3, 8], total = partRows.reduce(0, +)
        let inputs = (0..<count * columns).map { _ in Float.random(in: -1...1, using: &random) }
        for format in [QuantizationFormat.f16, .q8_0] {
            let parts = try partRows.map { rows in
                try QuantizedMatrix(quantizing: (0..<rows * columns).map { _ in Float.random(in: -1...1, using: &random) },
                                    rows: rows, columns: columns, format: format)
            }
            for engine in QuantizedDotEngine.allCases where engine.isAvailable {
                let activations = inputs.withUnsafeBufferPointer { parts[0].activations($0.baseAddress!, count: count) }
                var stacked = [Float](repeating: .nan, count: count * total), separate = stacked
                stacked.withUnsafeMutableBufferPointer {
                    QuantizedMatrix.multiply(parts, activations: activations, count: count, into: $0.baseAddress!,
                                             outputStride: total, engine: engine)
                }
                separate.withUnsafeMutableBufferPointer { out in
                    var offset = 0
                    for part in parts {
                        part.multiply(activations: activations, count: count, into: out.baseAddress! + offset,
                                      outputStride: total, engine: engine)
                        offset += part.rows
                    }
                }
                XCTAssertEqual(stacked.map(\.bitPattern), separate.map(\.bitPattern), "\(format.rawValue) on \(engine)")
            }
        }
    }

    /// The quantized product is the float product up to the format's error (a loose bound: the rounding of 4- or
    /// 8-bit values, not of the arithmetic).
    func testProductsAreCloseToTheFloatProduct() throws {
        var random = SystemRandomNumberGenerator()
        let rows = 16, columns = 1024
        let weights = (0..<rows * columns).map { _ in Float.random(in: -1...1, using: &random) }
        let vector = (0..<columns).map { _ in Float.random(in: -1...1, using: &random) }
        let exact = (0..<rows).map { row in (0..<columns).reduce(0.0) { $0 + Double(weights[row * columns + $1]) * Double(vector[$1]) } }
        let norm = (exact.reduce(0) { $0 + $1 * $1 } / Double(rows)).squareRoot()
        for (format, bound) in [(QuantizationFormat.q8_0, 0.02), (.q4_0, 0.2), (.q4_1, 0.2), (.q5_0, 0.1), (.q4_K, 0.2)] {
            let product = try QuantizedMatrix(quantizing: weights, rows: rows, columns: columns, format: format).multiply(vector)
            let error = (zip(product, exact).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) } / Double(rows)).squareRoot()
            XCTAssertLessThan(error / norm, bound, format.rawValue)
            XCTAssertGreaterThan(error, 0, "\(format.rawValue) cannot be exact on random values")
        }
    }

    /// Q4_K rows that are not whole blocks of 256 (SmolLM2's 576) take Q5_0, as llama.cpp's quantizer does; other
    /// formats and whole rows keep theirs.
    func testRowsThatAreNotWholeQ4KBlocksTakeQ5_0() {
        XCTAssertEqual(QuantizationFormat.q4_K.fitting(columns: 576), .q5_0)
        XCTAssertEqual(QuantizationFormat.q4_K.fitting(columns: 1536), .q4_K)
        XCTAssertEqual(QuantizationFormat.q4_0.fitting(columns: 576), .q4_0)
        XCTAssertEqual(QuantizationFormat.q5_0.headFormat(columns: 576), .q8_0)
    }

    /// `KEEL_QDOT_ENGINE` picks an engine the CPU runs; another name, or one the CPU lacks, gives nil (and a warning
    /// on standard error) so that the fastest runs; unset gives nil quietly.
    func testAnEngineVariableNamesAnEngineTheCPURuns() {
        func choice(_ value: String?) -> QuantizedDotEngine? {
            environmentChoice("KEEL_QDOT_ENGINE", among: QuantizedDotEngine.allCases, name: \.name,
                              isAvailable: { $0 != .avx2 }, fallback: "scalar",
                              environment: value.map { ["KEEL_QDOT_ENGINE": $0] } ?? [:])
        }
        XCTAssertEqual(choice("avx-vnni"), .avxVNNI)
        XCTAssertEqual(choice("scalar"), .scalar)
        XCTAssertNil(choice("avx2"), "an engine the CPU lacks")
        XCTAssertNil(choice("avx512"), "not an engine's name")
        XCTAssertNil(choice(nil))
    }

    func testShapesThatTheFormatsCannotHoldAreRefused() {
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [Float](repeating: 1, count: 100), rows: 2, columns: 50, format: .q8_0)) {
            XCTAssertEqual("\($0)", "a q8_0 matrix needs rows of a multiple of 32 values; this one has 50")
        }
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [Float](repeating: 1, count: 512), rows: 4, columns: 128, format: .q4_K)) {
            XCTAssertEqual("\($0)", "a q4_k matrix needs rows of a multiple of 256 values; this one has 128")
        }
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [Float](repeating: 1, count: 60), rows: 2, columns: 32, format: .q4_0)) {
            XCTAssertEqual("\($0)", "60 values cannot be a 2 × 32 matrix")
        }
        XCTAssertThrowsError(try QuantizedMatrix(format: .q4_0, rows: 2, columns: 32, bytes: [UInt8](repeating: 0, count: 35))) {
            XCTAssertEqual("\($0)", "a 2 × 32 q4_0 matrix has 36 bytes, not 35")
        }
    }
}

private extension QuantizationFormat {
    /// The C library's type for the format.
    var ggmlQuantType: keel_quant_type { keel_quant_type(UInt32(ggmlType)) }
}
