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
    /// The part that owns it, and its role there.
    public let part: ModelPart
    public let slot: TensorSlot

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

    /// Lays out the parameters of `config` as its family declares them: the embedding, each block, the head.
    public init(config: ModelConfig) {
        var entries: [ParameterEntry] = []
        var offset = 0
        let family = config.architecture.family
        for part in [ModelPart.embedding] + (0..<config.layers).map(ModelPart.block) + [.head] {
            for spec in family.tensors(of: part, config) {
                let entry = ParameterEntry(name: spec.name, shape: spec.shape, offset: offset, role: spec.role,
                                           initialization: spec.initialization, part: part, slot: spec.slot)
                entries.append(entry)
                offset += entry.count
            }
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

    /// The span of the flat buffer that `part`'s parameters fill (they are adjacent).
    public func range(of part: ModelPart) -> Range<Int> {
        let matching = entries.filter { $0.part == part }
        guard let first = matching.first, let last = matching.last else { preconditionFailure("no parameters in \(part)") }
        return first.offset..<last.range.upperBound
    }

    /// Offset of the first tensor in `slot` of `part`, if the family has one there.
    func offset(_ slot: TensorSlot, in part: ModelPart) -> Int? {
        entries.first { $0.part == part && $0.slot == slot }?.offset
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
