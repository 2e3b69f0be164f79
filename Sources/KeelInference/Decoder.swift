import KeelCore
import KeelKernels
import KeelModel

/// A model run for generation: tokens go through it a few at a time, each attending to the keys and values the
/// sequence's earlier tokens left in its `KVCache`, so a new token costs one pass over the weights (matrix-vector
/// products) rather than a pass over the whole text. A prompt goes through as one batch of rows (matrix
/// products); several sequences step together, one token each, as one batch.
///
/// The arithmetic is the training forward pass's (the same norms, activations, rotary embedding and fp32
/// products), so the logits equal those of `Transformer.forward` on the whole text up to rounding. With
/// `quantization`, every projection's weight is quantized once to that llama.cpp format (the output head to
/// `headFormat`: Q8_0 for the 4-bit formats; Q4_K rows that are not whole blocks of 256 to Q5_0) and products run on the quantized bytes; embeddings and norms stay fp32. A model read from a quantized GGUF file
/// runs on the file's own blocks (`init(model:quantizedTensors:)`).
public final class Decoder: @unchecked Sendable {
    public let config: ModelConfig
    /// The format the blocks' projections run in, or nil for fp32 (or for several formats).
    public private(set) var quantization: QuantizationFormat?
    /// Attention in llama.cpp's precision: queries, keys and values rounded to fp16 (its KV cache holds fp16, and its
    /// CPU attention takes the query to fp16 for the products with the keys), sums and softmax in fp32 — how a GGUF
    /// file runs by default, so that greedy text follows llama.cpp's through near ties. False: fp32 throughout, the
    /// training forward pass's arithmetic.
    public var halfPrecisionAttention = false
    private let model: Transformer
    private var weights: DecoderWeights
    private let rope: RotaryEmbedding?
    /// Attention scores, `max_seq_len` per thread of the pool (allocated once: `attend` runs per layer per token).
    private let scores: FloatBuffer
    /// A prompt's attention scores, a block of query rows × `max_seq_len` per thread of the pool (pages touched only
    /// by prompts long enough to use them).
    fileprivate let blockScores: FloatBuffer

    /// With `releasingFloatWeights` (and a `quantization`), the projections' fp32 weights are handed back to the
    /// operating system once quantized, the token table's too — the model's buffer then reads zero there, so only a
    /// model used for nothing else may be given — and a quantized run holds the norms (and GPT-2's positions) in fp32
    /// and the rest quantized: the token table as `keel quantize` writes it (lookups dequantize its rows).
    public convenience init(model: Transformer, quantization: QuantizationFormat? = nil, releasingFloatWeights: Bool = false) throws {
        self.init(running: model)
        if let quantization {
            self.quantization = quantization
            do {
                for layer in weights.layers.indices {
                    try weights.layers[layer].qkv.quantize(quantization)
                    try weights.layers[layer].attentionOutput.quantize(quantization)
                    try weights.layers[layer].up.quantize(quantization)
                    try weights.layers[layer].down.quantize(quantization)
                }
                try weights.output.quantize(quantization.headFormat(columns: config.width))
                // Lookups read the token table as `keel quantize` and `export gguf` write it — a tied head's in the
                // head's format, another's in the model's — so that `eval --quantize` measures the file it stands for.
                if model.table.entries.contains(where: { $0.slot == .output }) {
                    let table = Array(UnsafeBufferPointer(start: weights.tokenTable, count: config.vocabSize * config.width))
                    weights.quantizedTokenTable = try QuantizedMatrix(quantizing: table, rows: config.vocabSize, columns: config.width,
                                                                      format: quantization.fitting(columns: config.width))
                } else {
                    weights.quantizedTokenTable = weights.output.quantized.first
                }
            } catch {
                throw KeelError("cannot run this model in \(quantization.rawValue): \(error)")
            }
            if releasingFloatWeights {
                // Every matrix, and the token table (lookups read its quantized rows), now runs quantized.
                for entry in model.table.entries where entry.role == .matrix || entry.slot == .tokenTable {
                    model.parameters.release(entry.range)
                }
            }
        }
    }

    /// A decoder whose projections run on `quantizedTensors` (by Keel tensor name, rows of output features, as
    /// KeelCheckpoint's `GGUFImport.quantizedModel` reads them) wherever every tensor of a projection has one, all
    /// in one format; the other projections, and a tied head whose token table is not given, run in fp32 from
    /// `model` — a projection whose tensors come in several formats is dequantized into it. A tied head given its
    /// token table quantized multiplies that, as llama.cpp does.
    public convenience init(model: Transformer, quantizedTensors: [String: QuantizedMatrix]) throws {
        self.init(running: model)
        let table = model.table, parameters = model.parameters
        var formats = Set<QuantizationFormat>(), blockProjections = 0
        func use(_ projection: inout Projection, _ part: ModelPart, _ slot: TensorSlot) throws {
            let entries = table.entries.filter { $0.part == part && $0.slot == slot }
            let found = entries.compactMap { quantizedTensors[$0.name] }
            guard !found.isEmpty else { return }
            guard found.count == entries.count, Set(found.map(\.format)).count == 1 else {
                // Tensors of one product in several formats (or some not quantized) run in fp32 together.
                for entry in entries {
                    guard let matrix = quantizedTensors[entry.name] else { continue }
                    // Rows of outputs; a family storing [in, out] (GPT-2) takes them transposed.
                    var values = matrix.dequantized()
                    if config.architecture.family.weightLayout == .inputMajor {
                        values = transposed(values, rows: matrix.rows, columns: matrix.columns)
                    }
                    values.withUnsafeBufferPointer {
                        (parameters.pointer + entry.offset).update(from: $0.baseAddress!, count: entry.count)
                    }
                }
                return
            }
            try projection.use(found)
            if case .block = part {
                formats.insert(found[0].format)
                blockProjections += 1
            }
        }
        for layer in weights.layers.indices {
            let part = ModelPart.block(layer)
            try use(&weights.layers[layer].qkv, part, .qkv)
            try use(&weights.layers[layer].attentionOutput, part, .attentionOutput)
            try use(&weights.layers[layer].up, part, .up)
            try use(&weights.layers[layer].down, part, .down)
        }
        if table.entries.contains(where: { $0.slot == .output }) {
            try use(&weights.output, .head, .output)
        } else {
            try use(&weights.output, .embedding, .tokenTable)
        }
        if let name = table.entries.first(where: { $0.slot == .tokenTable })?.name {
            weights.quantizedTokenTable = quantizedTensors[name]
        }
        // A Q4_K model holds Q5_0 where rows are not whole blocks of 256 (`QuantizationFormat.fitting`): still Q4_K.
        let named: Set<QuantizationFormat> = formats == [.q4_K, .q5_0] ? [.q4_K] : formats
        quantization = named.count == 1 && blockProjections == 4 * config.layers ? named.first : nil
    }

    /// The model run in fp32, as both public initialisers start.
    private init(running model: Transformer) {
        config = model.config
        self.model = model
        weights = DecoderWeights(model)
        rope = config.architecture == .llama
            ? RotaryEmbedding(headDim: config.headDim, maxLength: config.maxLength, theta: config.ropeTheta) : nil
        scores = FloatBuffer(count: ThreadPool.shared.threadCount * config.maxLength)
        blockScores = FloatBuffer(count: ThreadPool.shared.threadCount * Self.attentionBlock * config.maxLength)
    }

    /// A new, empty sequence.
    public func makeSequence() -> DecoderSequence {
        DecoderSequence(cache: KVCache(layers: config.layers, capacity: config.maxLength, rowWidth: config.kvHeads * config.headDim))
    }

    /// Appends `tokens` to `sequence` as one batch of rows and returns the logits after the last of them.
    public func append(_ tokens: [Int32], to sequence: DecoderSequence) -> [Float] {
        precondition(!tokens.isEmpty, "nothing to append")
        precondition(sequence.count + tokens.count <= config.maxLength,
                     "\(sequence.count + tokens.count) tokens exceed max_seq_len (\(config.maxLength))")
        let rows = tokens.indices.map { Row(sequence: sequence, position: sequence.count + $0) }
        let logits = forward(tokens, rows: rows, logitsOf: [tokens.count - 1])
        sequence.cache.count += tokens.count
        return logits[0]
    }

    /// The logits after each of `tokens` (a text from its start, at most `max_seq_len` tokens), in one batch.
    public func logits(of tokens: [Int32]) -> [[Float]] {
        precondition(!tokens.isEmpty && tokens.count <= config.maxLength, "1 to max_seq_len tokens")
        let sequence = makeSequence()
        return forward(tokens, rows: tokens.indices.map { Row(sequence: sequence, position: $0) }, logitsOf: Array(tokens.indices))
    }

    /// Appends one token to each of `sequences` as one batch and returns each one's next logits.
    public func step(_ tokens: [Int32], sequences: [DecoderSequence]) -> [[Float]] {
        precondition(tokens.count == sequences.count, "one token per sequence")
        precondition(Set(sequences.map(ObjectIdentifier.init)).count == sequences.count, "a sequence appears twice")
        for sequence in sequences { precondition(sequence.count < config.maxLength, "a sequence is at max_seq_len (\(config.maxLength))") }
        let rows = sequences.map { Row(sequence: $0, position: $0.count) }
        let logits = forward(tokens, rows: rows, logitsOf: Array(rows.indices))
        for sequence in sequences { sequence.cache.count += 1 }
        return logits
    }

    /// Where a row's token goes: its sequence and its position there.
    private struct Row {
        let sequence: DecoderSequence
        let position: Int
    }

    /// Runs `tokens` (one per row) through the model, writing each row's keys and values into its sequence's cache
    /// at its position before any row attends (so a prompt's rows see each other, causally), and returns the logits
    /// of the rows `logitsOf`.
    private func forward(_ tokens: [Int32], rows: [Row], logitsOf: [Int]) -> [[Float]] {
        let n = rows.count, c = config.width, d = config.headDim, f = config.hiddenWidth
        let heads = config.heads, kvHeads = config.kvHeads, kvWidth = kvHeads * d
        let qkvWidth = (heads + 2 * kvHeads) * d
        let upWidth = config.architecture == .llama ? 2 * f : f
        var x = [Float](repeating: 0, count: n * c), normed = x, attended = [Float](repeating: 0, count: n * heads * d)
        var qkv = [Float](repeating: 0, count: n * qkvWidth), projected = x
        var hidden = [Float](repeating: 0, count: n * upWidth), activated = [Float](repeating: 0, count: n * f)
        var statistics = [Float](repeating: 0, count: 2 * n)
        // The embedding (GPT-2 adds its learned position).
        for (r, token) in tokens.enumerated() {
            precondition(token >= 0 && Int(token) < config.vocabSize, "token \(token) outside the vocabulary")
            if let table = weights.quantizedTokenTable {
                x.withUnsafeMutableBufferPointer { table.dequantizeRow(Int(token), into: $0.baseAddress! + r * c) }
            } else {
                let row = Int(token) * c
                for i in 0..<c { x[r * c + i] = weights.tokenTable[row + i] }
            }
            if let positions = weights.positionTable {
                for i in 0..<c { x[r * c + i] += positions[rows[r].position * c + i] }
            }
        }
        for (layer, w) in weights.layers.enumerated() {
            normalize(&normed, x, w.attentionNorm, rows: n, statistics: &statistics)
            normed.withUnsafeBufferPointer { input in
                qkv.withUnsafeMutableBufferPointer { w.qkv.apply($0.baseAddress!, input.baseAddress!, rows: n) }
            }
            qkv.withUnsafeMutableBufferPointer { qkv in
                for (r, row) in rows.enumerated() {
                    let line = qkv.baseAddress! + r * qkvWidth
                    rope?.rotate(line, position: row.position, heads: heads + kvHeads)
                    if halfPrecisionAttention {
                        for i in 0..<((heads + 2 * kvHeads) * d) { line[i] = Float(Float16(line[i])) }
                    }
                    let cache = row.sequence.cache
                    (cache.keys(layer) + row.position * kvWidth).update(from: line + heads * d, count: kvWidth)
                    (cache.values(layer) + row.position * kvWidth).update(from: line + heads * d + kvWidth, count: kvWidth)
                }
                attended.withUnsafeMutableBufferPointer { out in
                    attend(out.baseAddress!, queries: UnsafePointer(qkv.baseAddress!), stride: qkvWidth, rows: rows, layer: layer)
                }
            }
            attended.withUnsafeBufferPointer { input in
                projected.withUnsafeMutableBufferPointer { w.attentionOutput.apply($0.baseAddress!, input.baseAddress!, rows: n) }
            }
            for i in 0..<(n * c) { x[i] += projected[i] }
            normalize(&normed, x, w.mlpNorm, rows: n, statistics: &statistics)
            normed.withUnsafeBufferPointer { input in
                hidden.withUnsafeMutableBufferPointer { w.up.apply($0.baseAddress!, input.baseAddress!, rows: n) }
            }
            hidden.withUnsafeBufferPointer { input in
                activated.withUnsafeMutableBufferPointer { out in
                    switch config.architecture {
                    case .gpt2: GELU.forward(out.baseAddress!, input.baseAddress!, count: n * f)
                    case .llama: SwiGLU.forward(out.baseAddress!, input.baseAddress!, rows: n, width: f)
                    }
                }
            }
            activated.withUnsafeBufferPointer { input in
                projected.withUnsafeMutableBufferPointer { w.down.apply($0.baseAddress!, input.baseAddress!, rows: n) }
            }
            for i in 0..<(n * c) { x[i] += projected[i] }
        }
        // The head, on the rows whose logits are wanted only.
        let wanted = logitsOf.flatMap { x[($0 * c)..<(($0 + 1) * c)] }
        var finalNormed = wanted
        normalize(&finalNormed, wanted, weights.finalNorm, rows: logitsOf.count, statistics: &statistics)
        var logits = [Float](repeating: 0, count: logitsOf.count * config.vocabSize)
        finalNormed.withUnsafeBufferPointer { input in
            logits.withUnsafeMutableBufferPointer { weights.output.apply($0.baseAddress!, input.baseAddress!, rows: logitsOf.count) }
        }
        return logitsOf.indices.map { Array(logits[($0 * config.vocabSize)..<(($0 + 1) * config.vocabSize)]) }
    }

    /// LayerNorm (GPT-2) or RMSNorm (Llama) of `rows` rows of `x` into `out`.
    private func normalize(_ out: inout [Float], _ x: [Float], _ norm: NormWeights, rows: Int, statistics: inout [Float]) {
        let c = config.width
        statistics.withUnsafeMutableBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                switch config.architecture {
                case .gpt2:
                    LayerNorm.forward(o.baseAddress!, mean: s.baseAddress!, rstd: s.baseAddress! + rows, x, weight: norm.weight,
                                      bias: norm.bias!, rows: rows, columns: c, epsilon: config.normEpsilon)
                case .llama:
                    RMSNorm.forward(o.baseAddress!, rstd: s.baseAddress!, x, weight: norm.weight, rows: rows, columns: c,
                                    epsilon: config.normEpsilon)
                }
            }
        }
    }

    /// Each row's attention over its sequence's cached keys and values up to its own position, head by head
    /// (query head h reads kv head h / (heads / kvHeads)); rows × heads shared among the pool's threads.
    private func attend(_ out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>, stride: Int, rows: [Row], layer: Int) {
        let d = config.headDim, heads = config.heads, group = heads / config.kvHeads, kvWidth = config.kvHeads * d
        let scale = 1 / Float(d).squareRoot(), capacity = config.maxLength
        if rows.count > 1, rows.allSatisfy({ $0.sequence === rows[0].sequence }),
           rows.indices.allSatisfy({ rows[$0].position == rows[0].position + $0 }) {
            attendInBlocks(out, queries: queries, stride: stride, sequence: rows[0].sequence, start: rows[0].position,
                           count: rows.count, layer: layer)
            return
        }
        let scratch = self.scores.pointer
        ThreadPool.shared.parallelChunks(rows.count * heads) { chunk, range in
            let scores = scratch + chunk * capacity
            for item in range {
                let r = item / heads, h = item % heads, row = rows[r]
                let query = queries + r * stride + h * d
                let keys = UnsafePointer(row.sequence.cache.keys(layer)) + (h / group) * d
                let values = UnsafePointer(row.sequence.cache.values(layer)) + (h / group) * d
                let visible = row.position + 1
                for j in 0..<visible { scores[j] = scale * dot(query, keys + j * kvWidth, d) }
                softmaxInPlace(scores, count: visible)
                let target = out + r * heads * d + h * d
                target.update(repeating: 0, count: d)
                for j in 0..<visible { axpy(scores[j], values + j * kvWidth, target, d) }
            }
        }
    }
}

extension Decoder {
    /// Rows of queries per block of `attendInBlocks`.
    static let attentionBlock = 64

    /// The attention of `count` consecutive positions from `start` of one sequence (a prompt): per head and block of
    /// query rows, the scores as one matrix product with the cached keys up to the block's last position, the
    /// causal softmax, and the output as one product with the values — the arithmetic of `attend`'s loop, in
    /// matrix products.
    fileprivate func attendInBlocks(_ out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>, stride: Int,
                                    sequence: DecoderSequence, start: Int, count: Int, layer: Int) {
        let d = config.headDim, heads = config.heads, group = heads / config.kvHeads, kvWidth = config.kvHeads * d
        let scale = 1 / Float(d).squareRoot(), block = Self.attentionBlock
        let blocks = (count + block - 1) / block
        let keys = UnsafePointer(sequence.cache.keys(layer)), values = UnsafePointer(sequence.cache.values(layer))
        let scratch = blockScores.pointer, scratchPerThread = block * config.maxLength
        ThreadPool.shared.parallelChunks(heads * blocks) { chunk, range in
            let scores = scratch + chunk * scratchPerThread
            for item in range {
                let h = item / blocks, first = (item % blocks) * block, rowCount = min(block, count - first)
                // Keys 0 ... start + first + rowCount − 1: the last row's whole past.
                let visible = start + first + rowCount
                let kv = (h / group) * d
                serialGemm(.none, .transposed, m: rowCount, n: visible, k: d, alpha: scale,
                           queries + first * stride + h * d, lda: stride, keys + kv, ldb: kvWidth,
                           beta: 0, scores, ldc: visible)
                for i in 0..<rowCount {
                    let line = scores + i * visible, seen = start + first + i + 1
                    softmaxInPlace(line, count: seen)
                    (line + seen).update(repeating: 0, count: visible - seen)
                }
                serialGemm(.none, .none, m: rowCount, n: d, k: visible, scores, lda: visible, values + kv, ldb: kvWidth,
                           beta: 0, out + first * heads * d + h * d, ldc: heads * d)
            }
        }
    }
}

/// One sequence being generated: the keys and values of the tokens it holds.
public final class DecoderSequence: @unchecked Sendable {
    let cache: KVCache

    init(cache: KVCache) { self.cache = cache }

    /// Tokens the sequence holds.
    public var count: Int { cache.count }

    /// Empties the sequence, to be filled again from a shorter text.
    public func reset() { cache.clear() }
}
