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
    /// The shape this rank holds: `wholeShape`, or its tensor-parallel piece of it.
    public let shape: [Int]
    /// The tensor's shape in the whole model.
    public let wholeShape: [Int]
    /// How tensor parallelism cuts it, and which piece this rank holds, of how many (fewer than the tensor
    /// ranks when several share a piece: `TensorSplit.piece(for:)`).
    public let split: TensorSplit
    public let tensorRank: TensorRank
    /// First element in the flat buffer.
    public let offset: Int
    public let role: ParameterRole
    public let initialization: Initialization
    /// The part that owns it, and its role there.
    public let part: ModelPart
    public let slot: TensorSlot
    /// Its position in the whole model's table: what keys its initial values, so a pipeline stage's tensors
    /// start equal to the same tensors of the whole model.
    public let key: Int

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
    /// The tensor-parallel rank whose pieces the table holds.
    public let tensor: TensorRank
    private let index: [String: Int]

    /// Lays out the parameters of `config` as its family declares them: the embedding, each block, the head.
    public init(config: ModelConfig) {
        self.init(config: config, layers: 0..<config.layers)
    }

    /// Whether every tensor of `config` divides into `size` tensor-parallel pieces.
    public static func divides(_ config: ModelConfig, by size: Int) -> Bool {
        let family = config.architecture.family
        let parts = [ModelPart.embedding] + (0..<config.layers).map(ModelPart.block) + [.head]
        return parts.allSatisfy { part in family.tensors(of: part, config).allSatisfy { divides($0, by: size) } }
    }

    /// Whether `spec` divides into `size` pieces. The vocabulary's rows (the token table, the output head) are cut
    /// even when they do not divide — its pieces then differ by a row (`TensorSplit`) — so that a run resumes at
    /// any tensor-parallel size whatever its vocabulary (GPT-2's 50,257 ids, trained at tp = 1, at tp = 2). Heads
    /// and the MLP's width must divide.
    static func divides(_ spec: TensorSpec, by size: Int) -> Bool {
        spec.slot == .tokenTable || spec.slot == .output || spec.split.divides(by: size)
    }

    /// The parameters of one pipeline stage: the embedding when `layers` starts at 0, blocks `layers`, and the
    /// head when they end at the last block. A tied head (GPT-2) on a stage without the embedding gets its own
    /// copy of the token table, after the head's own tensors and under the same name, as the head's output
    /// weight (its gradient is then summed with the first stage's, so both copies stay equal). With `tensor`,
    /// each tensor that tensor parallelism splits holds only that rank's piece (`TensorSplit`); every block of a
    /// split tensor must divide by the group's size (`divides`).
    public init(config: ModelConfig, layers: Range<Int>, tensor: TensorRank = .whole) {
        precondition(!layers.isEmpty && layers.lowerBound >= 0 && layers.upperBound <= config.layers, "no such layers")
        let family = config.architecture.family
        let parts = [ModelPart.embedding] + (0..<config.layers).map(ModelPart.block) + [.head]
        let whole = parts.flatMap { part in family.tensors(of: part, config).map { (part, $0) } }
        let first = layers.lowerBound == 0, last = layers.upperBound == config.layers
        var kept = whole.enumerated().filter { _, tensor in
            switch tensor.0 {
            case .embedding: first
            case .block(let layer): layers.contains(layer)
            case .head: last
            }
        }
        let tied = !whole.contains { $0.1.slot == .output }
        if last && !first && tied, let tokens = whole.enumerated().first(where: { $0.element.1.slot == .tokenTable }) {
            let table = tokens.element.1
            kept.append((tokens.offset, (.head, TensorSpec(name: table.name, shape: table.shape, role: table.role,
                                                           initialization: table.initialization, slot: .output,
                                                           split: table.split))))
        }
        var entries: [ParameterEntry] = []
        var offset = 0
        for (key, (part, spec)) in kept {
            precondition(Self.divides(spec, by: tensor.size), "\(spec.name) does not divide into \(tensor.size) pieces")
            let piece = spec.split.piece(for: tensor)
            let entry = ParameterEntry(name: spec.name, shape: spec.split.shape(of: spec.shape, piece: piece),
                                       wholeShape: spec.shape, split: spec.split, tensorRank: piece, offset: offset,
                                       role: spec.role, initialization: spec.initialization, part: part, slot: spec.slot,
                                       key: key)
            entries.append(entry)
            offset += entry.count
        }
        self.entries = entries
        self.count = offset
        self.tensor = tensor
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

    /// Fills `buffer` with the initial values, each tensor from its own random stream keyed by its position in
    /// the whole model, so a tensor's initial values depend neither on the others nor on the stage holding it;
    /// a tensor-parallel piece is cut from the whole tensor's values. With `range`, only the elements in it are
    /// written (a fully sharded rank's own share), with the same values they have in the whole buffer.
    public func initialize(_ buffer: FloatBuffer, seed: UInt64, only range: Range<Int>? = nil) {
        for entry in entries {
            let kept = entry.range.clamped(to: range ?? entry.range)
            guard !kept.isEmpty else { continue }
            // The entry's values, into the buffer when it is wholly kept, else into scratch to copy `kept` from.
            let scratch = kept == entry.range ? nil : UnsafeMutablePointer<Float>.allocate(capacity: entry.count)
            defer { scratch?.deallocate() }
            let p = scratch ?? buffer.pointer + entry.offset
            switch entry.initialization {
            case .zeros: p.update(repeating: 0, count: entry.count)
            case .ones: p.update(repeating: 1, count: entry.count)
            case .normal(let std):
                var random = RandomStream(seed: seed, key: 0x1417, UInt64(entry.key))
                let whole = entry.wholeShape.reduce(1, *)
                if whole == entry.count {
                    for j in 0..<entry.count { p[j] = random.nextNormal() * std }
                } else {
                    let values = UnsafeMutablePointer<Float>.allocate(capacity: whole)
                    defer { values.deallocate() }
                    for j in 0..<whole { values[j] = random.nextNormal() * std }
                    entry.split.copy(values, shape: entry.wholeShape, p, rank: entry.tensorRank)
                }
            }
            if let scratch {
                (buffer.pointer + kept.lowerBound).update(from: scratch + (kept.lowerBound - entry.offset), count: kept.count)
            }
        }
    }
}
