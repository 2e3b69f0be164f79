import KeelCore

/// How a parameter is initialised.
public enum Initialization: Sendable, Equatable {
    case normal(std: Float)
    case zeros
    case ones
}

/// What kind of tensor a parameter is; decides weight decay.
public enum ParameterRole: Sendable, Equatable {
    case matrix, embedding, norm, bias
}

/// A named view into the flat parameter (and gradient) buffer.
public struct ParameterEntry: Sendable, Equatable {
    /// Hugging Face name, e.g. `transformer.h.0.attn.c_attn.weight`.
    public let name: String
    public let shape: [Int]
    /// First element in the flat buffer.
    public let offset: Int
    public let role: ParameterRole
    public let initialization: Initialization

    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// Every parameter of a model as a named view of one flat buffer, in a fixed order.
///
/// The order keeps tensors that one matrix product reads together adjacent: Llama's q/k/v projections and
/// its gate/up projections are consecutive, so one GEMM computes each group.
public struct ParameterTable: Sendable {
    public let entries: [ParameterEntry]
    public let count: Int
    private let index: [String: Int]

    /// Lays out the parameters of `config` with Hugging Face names.
    public init(config: ModelConfig) {
        var entries: [ParameterEntry] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int], _ role: ParameterRole, _ initialization: Initialization) {
            let entry = ParameterEntry(name: name, shape: shape, offset: offset, role: role, initialization: initialization)
            entries.append(entry)
            offset += entry.count
        }
        let c = config.width, f = config.hiddenWidth, v = config.vocabSize
        let std: Float = 0.02
        // Residual projections are scaled down with depth (GPT-2 paper) so the stream's variance stays bounded.
        let residualStd = std / Float(2 * config.layers).squareRoot()
        switch config.architecture {
        case .gpt2:
            add("transformer.wte.weight", [v, c], .embedding, .normal(std: std))
            add("transformer.wpe.weight", [config.maxLength, c], .embedding, .normal(std: std))
            for l in 0..<config.layers {
                let p = "transformer.h.\(l)."
                add(p + "ln_1.weight", [c], .norm, .ones)
                add(p + "ln_1.bias", [c], .bias, .zeros)
                add(p + "attn.c_attn.weight", [c, 3 * c], .matrix, .normal(std: std))
                add(p + "attn.c_attn.bias", [3 * c], .bias, .zeros)
                add(p + "attn.c_proj.weight", [c, c], .matrix, .normal(std: residualStd))
                add(p + "attn.c_proj.bias", [c], .bias, .zeros)
                add(p + "ln_2.weight", [c], .norm, .ones)
                add(p + "ln_2.bias", [c], .bias, .zeros)
                add(p + "mlp.c_fc.weight", [c, f], .matrix, .normal(std: std))
                add(p + "mlp.c_fc.bias", [f], .bias, .zeros)
                add(p + "mlp.c_proj.weight", [f, c], .matrix, .normal(std: residualStd))
                add(p + "mlp.c_proj.bias", [c], .bias, .zeros)
            }
            add("transformer.ln_f.weight", [c], .norm, .ones)
            add("transformer.ln_f.bias", [c], .bias, .zeros)
        case .llama:
            let d = config.headDim, q = config.heads * d, kv = config.kvHeads * d
            add("model.embed_tokens.weight", [v, c], .embedding, .normal(std: std))
            for l in 0..<config.layers {
                let p = "model.layers.\(l)."
                add(p + "input_layernorm.weight", [c], .norm, .ones)
                add(p + "self_attn.q_proj.weight", [q, c], .matrix, .normal(std: std))
                add(p + "self_attn.k_proj.weight", [kv, c], .matrix, .normal(std: std))
                add(p + "self_attn.v_proj.weight", [kv, c], .matrix, .normal(std: std))
                add(p + "self_attn.o_proj.weight", [c, q], .matrix, .normal(std: residualStd))
                add(p + "post_attention_layernorm.weight", [c], .norm, .ones)
                add(p + "mlp.gate_proj.weight", [f, c], .matrix, .normal(std: std))
                add(p + "mlp.up_proj.weight", [f, c], .matrix, .normal(std: std))
                add(p + "mlp.down_proj.weight", [c, f], .matrix, .normal(std: residualStd))
            }
            add("model.norm.weight", [c], .norm, .ones)
            add("lm_head.weight", [v, c], .matrix, .normal(std: std))
        }
        self.entries = entries
        self.count = offset
        self.index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.name, $0) })
    }

    /// The optimizer's weight-decay groups: matrices decay; norms, biases and (unless `decayEmbeddings`)
    /// embedding tables do not.
    public func decayGroups(decayEmbeddings: Bool) -> [(range: Range<Int>, decays: Bool)] {
        entries.map { ($0.range, $0.role == .matrix || ($0.role == .embedding && decayEmbeddings)) }
    }

    /// The entry called `name`, if any.
    public subscript(name: String) -> ParameterEntry? {
        index[name].map { entries[$0] }
    }

    /// The contiguous span of the flat buffer held by the parameters whose names start with `prefix`
    /// (e.g. one block's `model.layers.3.`).
    public func range(ofPrefix prefix: String) -> Range<Int> {
        let matching = entries.filter { $0.name.hasPrefix(prefix) }
        guard let first = matching.first, let last = matching.last else { preconditionFailure("no parameters under \(prefix)") }
        precondition(matching.reduce(0) { $0 + $1.count } == last.range.upperBound - first.offset, "\(prefix) is not contiguous")
        return first.offset..<last.range.upperBound
    }

    /// Offset of a parameter that the layout guarantees exists.
    func offset(_ name: String) -> Int {
        guard let entry = self[name] else { preconditionFailure("no parameter \(name)") }
        return entry.offset
    }

    /// Fills `buffer` with the initial values, each tensor from its own random stream keyed by its index,
    /// so a tensor's initial values do not depend on the others.
    public func initialize(_ buffer: FloatBuffer, seed: UInt64) {
        for (i, entry) in entries.enumerated() {
            let p = buffer.pointer + entry.offset
            switch entry.initialization {
            case .zeros: p.update(repeating: 0, count: entry.count)
            case .ones: p.update(repeating: 1, count: entry.count)
            case .normal(let std):
                var random = RandomStream(seed: seed, key: 0x1417, UInt64(i))
                for j in 0..<entry.count { p[j] = random.nextNormal() * std }
            }
        }
    }
}
