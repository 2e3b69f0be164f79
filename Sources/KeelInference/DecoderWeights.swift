import KeelCore
import KeelKernels
import KeelModel

/// A projection of a decoder, ready for products: an fp32 weight viewed in the model's flat buffer, or the same
/// weight quantized to one of llama.cpp's formats (rows of output features) — in parts when its tensors come apart
/// (q, k and v of a GGUF file, each its own mapped tensor), whose rows follow each other in the output.
struct Projection {
    let shape: LinearShape
    let weight: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?
    /// The weight quantized, `[out, in]`, in parts of consecutive output rows; empty when the decoder runs fp32.
    var quantized: [QuantizedMatrix] = []

    /// out[rows, O] = input[rows, I] · W (+ bias).
    func apply(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, rows: Int) {
        guard let first = quantized.first else {
            shape.forward(out, input, weight: weight, bias: bias, rows: rows)
            return
        }
        // The input quantized once for every part (they share format and width).
        QuantizedMatrix.multiply(quantized, activations: first.activations(input, count: rows), count: rows, into: out,
                                 outputStride: shape.outFeatures)
        if let bias {
            let o = shape.outFeatures
            for row in 0..<rows { for j in 0..<o { out[row * o + j] += bias[j] } }
        }
    }

    /// The weight as `[out, in]` values (transposed from GPT-2's `[in, out]`).
    func outputMajorValues() -> [Float] {
        let (i, o) = (shape.inFeatures, shape.outFeatures), stored = UnsafeBufferPointer(start: weight, count: i * o)
        return shape.layout == .outputMajor ? Array(stored) : transposed(stored, rows: i, columns: o)
    }

    /// Runs on `matrices` instead of the fp32 weight: the rows of the tensors that make up the projection, in order
    /// (q, k, v; gate, up), in one format.
    mutating func use(_ matrices: [QuantizedMatrix]) throws {
        let format = matrices[0].format
        guard matrices.allSatisfy({ $0.format == format && $0.columns == shape.inFeatures }),
              matrices.map(\.rows).reduce(0, +) == shape.outFeatures
        else {
            let found = matrices.map { "\($0.rows) × \($0.columns) \($0.format.rawValue)" }.joined(separator: ", ")
            throw KeelError("a \(shape.outFeatures) × \(shape.inFeatures) projection cannot run on \(found)")
        }
        quantized = matrices
    }

    /// Quantizes the weight to `format`, or to the format its rows fit (`QuantizationFormat.fitting`: Q5_0 for Q4_K
    /// rows that are not whole blocks of 256); its rows must hold whole blocks of that.
    mutating func quantize(_ format: QuantizationFormat) throws {
        quantized = [try QuantizedMatrix(quantizing: outputMajorValues(), rows: shape.outFeatures, columns: shape.inFeatures,
                                         format: format.fitting(columns: shape.inFeatures))]
    }
}

/// A norm's weight and, for LayerNorm, its bias.
struct NormWeights {
    let weight: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?
}

/// One block's weights.
struct LayerWeights {
    let attentionNorm, mlpNorm: NormWeights
    /// q | k | v in one product (Llama's three projections are adjacent in the buffer); gate | up for Llama.
    var qkv, attentionOutput, up, down: Projection
}

/// A whole model's weights, viewed in its flat parameter buffer (the model must outlive them).
struct DecoderWeights {
    let tokenTable: UnsafePointer<Float>
    /// The token table quantized — a quantized file's, or the model's quantized at load as the file would hold it:
    /// lookups dequantize its rows.
    var quantizedTokenTable: QuantizedMatrix?
    /// GPT-2's learned positions.
    let positionTable: UnsafePointer<Float>?
    var layers: [LayerWeights]
    let finalNorm: NormWeights
    /// The output projection: Llama's `lm_head`, GPT-2's token table (tied).
    var output: Projection

    init(_ model: Transformer) {
        precondition(model.isFirstStage && model.isLastStage, "generation needs the whole model, not a pipeline stage")
        let config = model.config, table = model.table, base = UnsafePointer(model.parameters.pointer)
        let layout = config.architecture.family.weightLayout
        func pointer(_ part: ModelPart, _ slot: TensorSlot) -> UnsafePointer<Float>? {
            table.entries.first { $0.part == part && $0.slot == slot }.map { base + $0.offset }
        }
        func projection(_ part: ModelPart, _ weight: TensorSlot, _ bias: TensorSlot, _ input: Int, _ output: Int) -> Projection {
            Projection(shape: LinearShape(inFeatures: input, outFeatures: output, layout: layout),
                       weight: pointer(part, weight)!, bias: pointer(part, bias))
        }
        let c = config.width, d = config.headDim, f = config.hiddenWidth
        let qkvWidth = (config.heads + 2 * config.kvHeads) * d
        tokenTable = pointer(.embedding, .tokenTable)!
        positionTable = pointer(.embedding, .positionTable)
        layers = (0..<config.layers).map { layer in
            let part = ModelPart.block(layer)
            return LayerWeights(
                attentionNorm: NormWeights(weight: pointer(part, .attentionNorm)!, bias: pointer(part, .attentionNormBias)),
                mlpNorm: NormWeights(weight: pointer(part, .mlpNorm)!, bias: pointer(part, .mlpNormBias)),
                qkv: projection(part, .qkv, .qkvBias, c, qkvWidth),
                attentionOutput: projection(part, .attentionOutput, .attentionOutputBias, config.heads * d, c),
                up: projection(part, .up, .upBias, c, config.architecture == .llama ? 2 * f : f),
                down: projection(part, .down, .downBias, f, c))
        }
        finalNorm = NormWeights(weight: pointer(.head, .finalNorm)!, bias: pointer(.head, .finalNormBias))
        if let head = pointer(.head, .output) {
            output = Projection(shape: LinearShape(inFeatures: c, outFeatures: config.vocabSize, layout: .outputMajor),
                                weight: head, bias: nil)
        } else {
            output = Projection(shape: LinearShape(inFeatures: c, outFeatures: config.vocabSize, layout: .outputMajor),
                                weight: tokenTable, bias: nil)
        }
    }
}
