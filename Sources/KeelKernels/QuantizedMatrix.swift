import Foundation
import CQuant
import KeelCore
import Synchronization

/// A weight format of llama.cpp: blocks of values sharing a scale, laid out byte for byte as ggml lays them out
/// (`keel_quant.h` describes each), so a row quantized here is a row of a GGUF tensor of that type.
public enum QuantizationFormat: String, CaseIterable, Sendable {
    /// IEEE half precision, 16 bits a value (rows of a multiple of 32 values); products take the activations in
    /// half precision too, as ggml's do.
    case f16
    /// 32 values in 34 bytes: an fp16 scale and 32 signed bytes (8.5 bits a value).
    case q8_0
    /// 32 values in 18 bytes: an fp16 scale and 32 nibbles centred on 8 (4.5 bits a value).
    case q4_0
    /// 32 values in 20 bytes: an fp16 scale, an fp16 minimum and 32 nibbles (5 bits a value).
    case q4_1
    /// 32 values in 22 bytes: an fp16 scale and 32 five-bit values centred on 16 (5.5 bits a value) — what a Q4_K
    /// model holds where rows are not whole blocks of 256 (`fitting(columns:)`), as llama.cpp's quantizer does.
    case q5_0
    /// 256 values in 144 bytes: fp16 scales of the scales and of the minimums, eight 6-bit scales and minimums
    /// for blocks of 32, and 256 nibbles (4.5 bits a value).
    case q4_K = "q4_k"

    var type: keel_quant_type {
        switch self {
        case .f16: KEEL_QUANT_F16
        case .q8_0: KEEL_QUANT_Q8_0
        case .q4_0: KEEL_QUANT_Q4_0
        case .q4_1: KEEL_QUANT_Q4_1
        case .q5_0: KEEL_QUANT_Q5_0
        case .q4_K: KEEL_QUANT_Q4_K
        }
    }

    /// The format of a model's output head when its other weights are in this one: 4-bit formats keep the head in
    /// Q8_0 (llama.cpp's quantizer likewise keeps it wider than the rest: the logits are where 4-bit rounding costs
    /// most, a small model's above all), when its rows hold whole blocks of 32.
    public func headFormat(columns: Int) -> QuantizationFormat {
        switch self {
        case .q4_0, .q4_1, .q5_0, .q4_K: columns % QuantizationFormat.q8_0.blockValues == 0 ? .q8_0 : self
        case .f16, .q8_0: self
        }
    }

    /// The format a matrix with rows of `columns` values takes when a model is quantized to this one: Q4_K rows
    /// that are not whole super-blocks of 256 (SmolLM2's 576, say) take Q5_0, llama.cpp's fallback for them.
    public func fitting(columns: Int) -> QuantizationFormat {
        self == .q4_K && columns % blockValues != 0 ? .q5_0 : self
    }

    /// ggml's (and GGUF's) number for the format.
    public var ggmlType: Int { Int(type.rawValue) }
    /// Values per block.
    public var blockValues: Int { Int(keel_quant_block_values(type)) }
    /// Bytes per block.
    public var blockBytes: Int { keel_quant_block_bytes(type) }
    /// Bytes of a row of `columns` values.
    public func rowBytes(columns: Int) -> Int { columns / blockValues * blockBytes }
}

/// The instructions quantized dot products run on. Every engine gives the scalar reference's bits: the integer
/// sums are exact and the scaled sums are added in the reference's order.
public enum QuantizedDotEngine: Int, CaseIterable, Sendable {
    case scalar, avx2, avxVNNI, avx512VNNI

    var engine: keel_qdot_engine { keel_qdot_engine(UInt32(rawValue)) }

    /// The engine products use unless told otherwise: the fastest this CPU runs (AVX512-VNNI, then AVX-VNNI, then
    /// AVX2, then scalar), or the one `KEEL_QDOT_ENGINE` names (`scalar`, `avx2`, `avx-vnni`, `avx512-vnni`) when the
    /// CPU runs it — to compare the engines on one machine (another name, or one the CPU lacks, is warned about on
    /// standard error). Every engine gives the same bits.
    public static let best: QuantizedDotEngine = {
        let fastest = QuantizedDotEngine(rawValue: Int(keel_qdot_best_engine().rawValue)) ?? .scalar
        return environmentChoice("KEEL_QDOT_ENGINE", among: allCases, name: \.name, isAvailable: \.isAvailable,
                                 fallback: fastest.name) ?? fastest
    }()

    /// The engine's name, as `KEEL_QDOT_ENGINE` takes it.
    public var name: String {
        switch self {
        case .scalar: "scalar"
        case .avx2: "avx2"
        case .avxVNNI: "avx-vnni"
        case .avx512VNNI: "avx512-vnni"
        }
    }

    /// Whether this CPU runs the engine.
    public var isAvailable: Bool { keel_qdot_engine_available(engine) != 0 }
}

/// A matrix of `rows` × `columns` weights quantized row by row, and its product with a vector computed on the
/// quantized bytes (the vector is quantized to the format's activation blocks, as llama.cpp does), without a
/// dequantized copy of the matrix. Q8_0, Q4_0, Q5_0 and Q4_K rows are held interleaved eight at a time (the layout of
/// `keel_quant_interleave`; a last few rows short of eight stay as they are), so that one vector instruction takes
/// eight rows' blocks; `data` gives ggml's row layout back, byte for byte.
public struct QuantizedMatrix: Sendable {
    public let format: QuantizationFormat
    public let rows: Int
    public let columns: Int
    /// Groups of eight interleaved rows at the start of `storage` (0 for a format without the layout).
    private let groups: Int
    /// The groups (`groupBytes` each), then the rows after them in ggml's layout (`format.rowBytes(columns:)` each).
    private let storage: Data

    /// A copy of the rows' blocks, in ggml's layout.
    public var bytes: [UInt8] { [UInt8](data) }

    /// The rows' blocks in ggml's layout (as a GGUF tensor holds them).
    public var data: Data {
        guard groups > 0 else { return storage }
        let rowBytes = format.rowBytes(columns: columns), groupBytes = groupBytes
        var rowMajor = Data(count: rows * rowBytes)
        storage.withUnsafeBytes { source in
            rowMajor.withUnsafeMutableBytes { target in
                for group in 0..<groups {
                    keel_quant_deinterleave(format.type, Int64(columns), source.baseAddress! + group * groupBytes,
                                            target.baseAddress! + 8 * group * rowBytes, rowBytes)
                }
                let tail = rows - 8 * groups
                (target.baseAddress! + 8 * groups * rowBytes).copyMemory(from: source.baseAddress! + groups * groupBytes,
                                                                         byteCount: tail * rowBytes)
            }
        }
        return rowMajor
    }

    /// Whether the matrix holds its rows interleaved, in its own copy (the bytes it was made from are not read again).
    public var isInterleaved: Bool { groups > 0 }

    /// Bytes of one group of eight interleaved rows.
    private var groupBytes: Int { keel_quant_group_bytes(format.type, Int64(columns)) }

    /// The error for a row that `format` holds as infinities: its half-precision values (f16) or block scales and
    /// minimums overflowed. Whether they do depends on each block, not only on its largest magnitude (Q4_K fits a
    /// minimum below the block's own), so it is found by reading the quantized row back.
    static func beyondRange(_ format: QuantizationFormat, row: Int, largest: Float) -> KeelError {
        KeelError("\(format.rawValue) cannot hold row \(row) (largest magnitude \(largest)): its half-precision "
                  + (format == .f16 ? "values" : "block scales") + " would be infinite; q8_0 holds magnitudes up to about 8.3 million")
    }

    /// Quantizes row-major `values` (rows × columns) as ggml's reference quantizer does; a row the format would hold
    /// as infinities is an error (`beyondRange`).
    public init(quantizing values: [Float], rows: Int, columns: Int, format: QuantizationFormat) throws {
        try Self.checkShape(rows: rows, columns: columns, format: format)
        guard values.count == rows * columns else {
            throw KeelError("\(values.count) values cannot be a \(rows) × \(columns) matrix")
        }
        let rowBytes = format.rowBytes(columns: columns)
        // Quantized straight into the Data the matrix keeps (or interleaves): no further copy.
        var bytes = Data(count: rows * rowBytes)
        let overflowed = Mutex<Int?>(nil)
        values.withUnsafeBufferPointer { source in
            bytes.withUnsafeMutableBytes { target in
                ThreadPool.shared.parallelFor(rows) { range in
                    var back = [Float](repeating: 0, count: columns)
                    for row in range {
                        let input = source.baseAddress! + row * columns, output = target.baseAddress! + row * rowBytes
                        keel_quantize_row(format.type, input, output, Int64(columns))
                        // Read back: a finite row must stay finite.
                        keel_dequantize_row(format.type, output, &back, Int64(columns))
                        if !back.allSatisfy(\.isFinite), UnsafeBufferPointer(start: input, count: columns).allSatisfy(\.isFinite) {
                            overflowed.withLock { $0 = min($0 ?? row, row) }
                        }
                    }
                }
            }
        }
        if let row = overflowed.withLock({ $0 }) {
            throw Self.beyondRange(format, row: row, largest: values[(row * columns)..<((row + 1) * columns)].map(abs).max()!)
        }
        try self.init(format: format, rows: rows, columns: columns, data: bytes)
    }

    /// A matrix from blocks already quantized (a GGUF tensor's data, rows moved, say).
    public init(format: QuantizationFormat, rows: Int, columns: Int, bytes: [UInt8]) throws {
        try self.init(format: format, rows: rows, columns: columns, data: Data(bytes))
    }

    /// A matrix of blocks in ggml's row layout held elsewhere (a GGUF file's mapped tensor): formats without the
    /// interleaved layout (F16, Q4_1) compute on them where they lie, without a copy (their pages are read from the
    /// file as products touch them, and shared with the file cache, as llama.cpp uses its files); the others take
    /// one interleaved copy, as llama.cpp's repacking does.
    public init(format: QuantizationFormat, rows: Int, columns: Int, data: Data) throws {
        try Self.checkShape(rows: rows, columns: columns, format: format)
        guard data.count == rows * format.rowBytes(columns: columns) else {
            throw KeelError("a \(rows) × \(columns) \(format.rawValue) matrix has \(rows * format.rowBytes(columns: columns)) bytes, not \(data.count)")
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        let groupBytes = keel_quant_group_bytes(format.type, Int64(columns))
        groups = groupBytes > 0 ? rows / 8 : 0
        guard groups > 0 else {
            storage = data
            return
        }
        let rowBytes = format.rowBytes(columns: columns), groups = groups
        var interleaved = Data(count: groups * groupBytes + (rows - 8 * groups) * rowBytes)
        data.withUnsafeBytes { source in
            interleaved.withUnsafeMutableBytes { target in
                let (source, target) = (source.baseAddress!, target.baseAddress!)
                ThreadPool.shared.parallelFor(groups) { range in
                    for group in range {
                        keel_quant_interleave(format.type, Int64(columns), source + 8 * group * rowBytes, rowBytes,
                                              target + group * groupBytes)
                    }
                }
                (target + groups * groupBytes).copyMemory(from: source + 8 * groups * rowBytes,
                                                          byteCount: (rows - 8 * groups) * rowBytes)
            }
        }
        storage = interleaved
    }

    private static func checkShape(rows: Int, columns: Int, format: QuantizationFormat) throws {
        guard rows > 0, columns > 0, columns % format.blockValues == 0 else {
            throw KeelError("a \(format.rawValue) matrix needs rows of a multiple of \(format.blockValues) values; this one has \(columns)")
        }
    }

    /// The values row `row` stands for, written to `destination` (`columns` floats): an embedding lookup in a
    /// quantized table.
    public func dequantizeRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "row \(row) of a \(rows)-row matrix")
        let rowBytes = format.rowBytes(columns: columns)
        storage.withUnsafeBytes { source in
            guard row < 8 * groups else {
                let offset = groups * groupBytes + (row - 8 * groups) * rowBytes
                keel_dequantize_row(format.type, source.baseAddress! + offset, destination, Int64(columns))
                return
            }
            // The row's group back in ggml's layout, then its row.
            withUnsafeTemporaryAllocation(byteCount: 8 * rowBytes, alignment: 16) { rows in
                keel_quant_deinterleave(format.type, Int64(columns), source.baseAddress! + row / 8 * groupBytes,
                                        rows.baseAddress!, rowBytes)
                keel_dequantize_row(format.type, rows.baseAddress! + row % 8 * rowBytes, destination, Int64(columns))
            }
        }
    }

    /// The values the blocks stand for, row-major.
    public func dequantized() -> [Float] {
        Self.dequantized(format.type, rows: rows, columns: columns, bytes: data)
    }

    /// The product with `vector` (`columns` values): `rows` values. The vector is quantized once to the format's
    /// activation blocks (Q8_0 for Q8_0, Q4_0 and Q5_0, Q8_1 for Q4_1, Q8_K for Q4_K, F16 for F16); rows are shared among
    /// the pool's threads.
    public func multiply(_ vector: [Float], engine: QuantizedDotEngine = .best, pool: ThreadPool = .shared) -> [Float] {
        precondition(vector.count == columns, "a \(rows) × \(columns) matrix times a vector of \(vector.count)")
        var output = [Float](repeating: 0, count: rows)
        vector.withUnsafeBufferPointer { vector in
            output.withUnsafeMutableBufferPointer { output in
                multiply(vector.baseAddress!, count: 1, into: output.baseAddress!, engine: engine, pool: pool)
            }
        }
        return output
    }

    /// out[count, rows] = input[count, columns] · Mᵀ: each input row's product, as `multiply(_:)` computes it (the
    /// same bits), with each weight row read once for all the input rows.
    public func multiply(_ input: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>,
                         engine: QuantizedDotEngine = .best, pool: ThreadPool = .shared) {
        multiply(activations: activations(input, count: count, pool: pool), count: count, into: out, outputStride: rows,
                 engine: engine, pool: pool)
    }

    /// `count` rows of `columns` values quantized to this format's activation blocks, as products take them: one
    /// quantization for several matrices of the format and width (q, k and v, say).
    public func activations(_ input: UnsafePointer<Float>, count: Int, pool: ThreadPool = .shared) -> [UInt8] {
        let type = keel_quant_activation_type(format.type), rowBytes = activationRowBytes, columns = columns
        // Not zero-filled first: every byte is written below (a prompt's rows are megabytes).
        return [UInt8](unsafeUninitializedCapacity: count * rowBytes) { target, initialized in
            let target = target.baseAddress!
            let quantize = { (rows: Range<Int>) in
                for row in rows { keel_quantize_row(type, input + row * columns, target + row * rowBytes, Int64(columns)) }
            }
            // A prompt's rows among the pool's threads; one row alone is not worth a dispatch.
            if count > 1 { pool.parallelFor(count, quantize) } else { quantize(0..<count) }
            initialized = count * rowBytes
        }
    }

    /// Bytes of one quantized activation row.
    private var activationRowBytes: Int {
        let type = keel_quant_activation_type(format.type)
        return columns / Int(keel_quant_block_values(type)) * keel_quant_block_bytes(type)
    }

    /// out[t · outputStride + r] = activation row t · weight row r, for `count` rows quantized by `activations`.
    /// Each row's product is the one `multiply(_:)` computes, to the bit — except F16 with several rows (a prompt) on
    /// an engine without AVX-512, which runs as fp32 matrix products on the halves converted (`halfMatrixProduct`):
    /// the same products, summed in OpenBLAS's order.
    public func multiply(activations: [UInt8], count: Int, into out: UnsafeMutablePointer<Float>, outputStride: Int,
                         engine: QuantizedDotEngine = .best, pool: ThreadPool = .shared) {
        precondition(activations.count == count * activationRowBytes, "activations of another format, width or count")
        let engine = engine.isAvailable ? engine : .scalar
        if format == .f16 && count > 1 {
            Self.halfMatrixProduct([self], activations: activations, count: count, into: out, outputStride: outputStride,
                                   engine: engine, pool: pool)
            return
        }
        let rowBytes = format.rowBytes(columns: columns), activationRowBytes = activationRowBytes
        let groups = groups, groupBytes = groupBytes, tail = rows - 8 * groups
        storage.withUnsafeBytes { weights in
            activations.withUnsafeBytes { activations in
                let (weights, activations) = (weights.baseAddress!, activations.baseAddress!)
                // Pieces of work: the groups, then the rows after them one by one (every row, for a format
                // without groups).
                pool.parallelFor(groups + tail) { range in
                    let last = min(range.upperBound, groups)
                    if range.lowerBound < last {
                        keel_quant_matmul_groups(engine.engine, format.type, Int32(columns), Int32(last - range.lowerBound),
                                                 weights + range.lowerBound * groupBytes, Int32(count), activations,
                                                 activationRowBytes, out + 8 * range.lowerBound, outputStride)
                    }
                    let first = max(range.lowerBound, groups)
                    if first < range.upperBound {
                        let row = 8 * groups + first - groups
                        keel_quant_matmul(engine.engine, format.type, Int32(columns), Int32(range.upperBound - first),
                                          weights + groups * groupBytes + (first - groups) * rowBytes, rowBytes,
                                          Int32(count), activations, activationRowBytes, out + row, outputStride)
                    }
                }
            }
        }
    }
}

extension QuantizedMatrix {
    /// out[t · outputStride + r] = activation row t · row r of the matrices `parts` stacked (their rows follow each
    /// other in the output: q, k and v of a GGUF file, or gate and up), for `count` rows quantized by
    /// `parts[0].activations` — each part's `multiply(activations:…)`. The parts share format and width. A prompt in
    /// F16 converts its halves once for all the parts and shares every part's rows among the threads in one loop.
    public static func multiply(_ parts: [QuantizedMatrix], activations: [UInt8], count: Int,
                                into out: UnsafeMutablePointer<Float>, outputStride: Int,
                                engine: QuantizedDotEngine = .best, pool: ThreadPool = .shared) {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.format == parts[0].format && $0.columns == parts[0].columns },
                     "a product needs one part or more, all of one format and width")
        if parts[0].format == .f16 && count > 1 {
            precondition(activations.count == count * parts[0].activationRowBytes, "activations of another format, width or count")
            halfMatrixProduct(parts, activations: activations, count: count, into: out, outputStride: outputStride,
                              engine: engine.isAvailable ? engine : .scalar, pool: pool)
            return
        }
        var offset = 0
        for part in parts {
            part.multiply(activations: activations, count: count, into: out + offset, outputStride: outputStride,
                          engine: engine, pool: pool)
            offset += part.rows
        }
    }

    /// Rows of halves converted per OpenBLAS call in `halfMatrixProduct`.
    private static let halfRowsPerBlock = 64

    /// F16 matrices (stacked, as `multiply(_:activations:…)` takes them) times several rows of halves. With
    /// AVX-512, Keel's kernel (`keel_f16_matmul`: the dot product's own arithmetic, tiles of four weight rows by four
    /// activation rows, two by three on rows of over 1,024 values) on each thread's rows; otherwise blocks of weight rows converted to fp32 and multiplied by
    /// OpenBLAS's sgemm — a prompt at the speed of fp32 matrix products, where dot products pair by pair ran at a
    /// quarter of it.
    private static func halfMatrixProduct(_ parts: [QuantizedMatrix], activations: [UInt8], count: Int,
                                          into out: UnsafeMutablePointer<Float>, outputStride: Int,
                                          engine: QuantizedDotEngine, pool: ThreadPool) {
        let columns = parts[0].columns
        // Where each part's rows start in the output, and the total.
        let starts = parts.reduce(into: [0]) { $0.append($0.last! + $1.rows) }
        // The halves as floats, converted among the pool's threads (not zero-filled first: all are written).
        let input = activations.withUnsafeBytes { source in
            [Float](unsafeUninitializedCapacity: count * columns) { target, initialized in
                let (source, target) = (source.baseAddress!, target.baseAddress!)
                pool.parallelFor(count) { range in
                    keel_dequantize_row(KEEL_QUANT_F16, source + range.lowerBound * columns * 2,
                                        target + range.lowerBound * columns, Int64(range.count * columns))
                }
                initialized = count * columns
            }
        }
        withWeights(parts[...]) { weights in
            input.withUnsafeBufferPointer { input in
                let input = input.baseAddress!
                // The kernel runs with the AVX512-VNNI engine (AVX-512F and FMA come with it).
                if engine == .avx512VNNI {
                    pool.parallelFor(starts.last!) { range in
                        for part in parts.indices {
                            let first = max(range.lowerBound, starts[part]), last = min(range.upperBound, starts[part + 1])
                            guard first < last else { continue }
                            let rows = weights[part].assumingMemoryBound(to: UInt16.self) + (first - starts[part]) * columns
                            _ = keel_f16_matmul(engine.engine, Int32(columns), Int32(last - first), rows, Int32(count), input,
                                                out + first, outputStride)
                        }
                    }
                    return
                }
                // Blocks of each part's rows, as (part, first row in the part).
                let block = halfRowsPerBlock
                let blocks = parts.indices.flatMap { part in stride(from: 0, to: parts[part].rows, by: block).map { (part, $0) } }
                let scratch = FloatBuffer(count: pool.threadCount * block * columns)
                pool.parallelChunks(blocks.count) { chunk, range in
                    let converted = scratch.pointer + chunk * block * columns
                    for (part, first) in blocks[range] {
                        let blockRows = min(block, parts[part].rows - first)
                        keel_dequantize_row(KEEL_QUANT_F16, weights[part] + first * columns * 2, converted, Int64(blockRows * columns))
                        serialGemm(.none, .transposed, m: count, n: blockRows, k: columns, input, lda: columns, converted,
                                   ldb: columns, beta: 0, out + starts[part] + first, ldc: outputStride)
                    }
                }
            }
        }
    }

    /// Calls `body` with the address of each matrix's stored bytes, in order.
    private static func withWeights<Result>(_ parts: ArraySlice<QuantizedMatrix>, _ addresses: [UnsafeRawPointer] = [],
                                            _ body: ([UnsafeRawPointer]) -> Result) -> Result {
        guard let part = parts.first else { return body(addresses) }
        return part.storage.withUnsafeBytes { withWeights(parts.dropFirst(), addresses + [$0.baseAddress!], body) }
    }
}

extension QuantizedMatrix {
    /// The ggml types whose rows Keel dequantizes but does not compute on (llama.cpp's Q4_K_M and Q5 files hold
    /// them), by ggml number.
    private static let readOnlyTypes: [Int: keel_quant_type] = [7: KEEL_QUANT_Q5_1, 13: KEEL_QUANT_Q5_K, 14: KEEL_QUANT_Q6_K]

    /// The `rows` × `columns` values of a tensor of ggml type `ggmlType` in one of Keel's formats, or in Q5_1, Q5_K
    /// or Q6_K, as ggml's dequantizers compute them; nil for another type or rows that are not whole blocks.
    public static func dequantized(ggmlType: Int, rows: Int, columns: Int, bytes: Data) -> [Float]? {
        let type: keel_quant_type
        if let format = QuantizationFormat.allCases.first(where: { $0.ggmlType == ggmlType }) {
            type = format.type
        } else if let readOnly = readOnlyTypes[ggmlType] {
            type = readOnly
        } else {
            return nil
        }
        let blockValues = Int(keel_quant_block_values(type)), rowBytes = columns / blockValues * keel_quant_block_bytes(type)
        guard columns % blockValues == 0, bytes.count == rows * rowBytes else { return nil }
        return dequantized(type, rows: rows, columns: columns, bytes: bytes)
    }

    /// The values of `rows` rows of `type` (whole blocks, as many bytes as they take), row-major.
    fileprivate static func dequantized(_ type: keel_quant_type, rows: Int, columns: Int, bytes: Data) -> [Float] {
        let rowBytes = columns / Int(keel_quant_block_values(type)) * keel_quant_block_bytes(type)
        var values = [Float](repeating: 0, count: rows * columns)
        bytes.withUnsafeBytes { source in
            values.withUnsafeMutableBufferPointer { target in
                for row in 0..<rows {
                    keel_dequantize_row(type, source.baseAddress! + row * rowBytes, target.baseAddress! + row * columns,
                                        Int64(columns))
                }
            }
        }
        return values
    }
}
