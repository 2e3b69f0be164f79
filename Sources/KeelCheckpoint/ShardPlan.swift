import KeelComm
import KeelModel

/// Which tensor elements each rank of a layout writes to a sharded checkpoint: every element of the model
/// exactly once, and no rank anything it does not hold.
///
/// A rank owns, in each of its chunks' parameter buffers (its stage's tensors, or its tensor-parallel pieces of
/// them), the range of its data-parallel rank (`evenPartition` over the data-parallel group: ZeRO's range, used
/// whatever the ZeRO stage, so replicas that each hold everything still share the writing). Of those elements
/// it writes the tensors it is the first holder of: a tensor replicated over the tensor group is written by
/// tensor rank 0, a key/value piece several tensor ranks share by the first of them, and the last stage's copy
/// of a tied token table not at all (the first stage's is the model's). Every rank computes the same plan, so
/// world rank 0 can write the manifest without asking the others where their slices are.
public struct ShardPlan: Sendable {
    /// Elements `start ..< start + count` of one tensor's piece, which lie at `offset` in chunk `chunk`'s buffer.
    public struct Slice: Sendable, Equatable {
        public let name: String
        public let chunk: Int
        public let offset: Int
        public let piece: TensorRank
        public let start: Int
        public let count: Int
        public let wholeShape: [Int]
        public let split: TensorSplit

        /// Its key in the rank's safetensors file, for tensors of `kind`.
        public func key(_ kind: CheckpointKind) -> String {
            "\(kind.rawValue)/\(name)/\(piece.rank)/\(start)"
        }
    }

    public let config: ModelConfig
    public let layout: CheckpointLayout
    private let mesh: Mesh
    private let wholeTable: ParameterTable

    public init(config: ModelConfig, layout: CheckpointLayout) throws {
        self.config = config
        self.layout = layout
        mesh = try Mesh(worldSize: layout.worldSize, pipeline: layout.pipeline, tensor: layout.tensor)
        wholeTable = ParameterTable(config: config)
    }

    /// The file world rank `rank` writes.
    public static func fileName(rank: Int) -> String {
        "rank_" + String(repeating: "0", count: max(0, 5 - String(rank).count)) + String(rank) + ".safetensors"
    }

    /// The piece of its tensor that `entry` holds: the whole tensor when it is not cut.
    public static func piece(of entry: ParameterEntry) -> TensorRank {
        entry.split == .replicated ? .whole : entry.tensorRank
    }

    /// The parameter table of each chunk of world rank `rank`, in chunk order.
    public func tables(rank: Int) -> [ParameterTable] {
        let position = mesh.coordinates(of: rank)
        return (0..<layout.virtualStages).map { chunk in
            ParameterTable(config: config, layers: layout.stageLayers[chunk * layout.pipeline + position.pipeline],
                           tensor: TensorRank(rank: position.tensor, size: layout.tensor))
        }
    }

    /// The slices world rank `rank` writes, chunk by chunk in buffer order.
    public func slices(rank: Int) -> [Slice] {
        let position = mesh.coordinates(of: rank)
        var slices: [Slice] = []
        for (chunk, table) in tables(rank: rank).enumerated() {
            let owned = evenPartition(count: table.count, parts: layout.data)[position.data]
            for entry in table.entries where wholeTable[entry.name]!.slot == entry.slot
                && Self.isFirstHolder(entry, tensorRank: position.tensor, of: layout.tensor) {
                let kept = entry.range.clamped(to: owned)
                guard !kept.isEmpty else { continue }
                slices.append(Slice(name: entry.name, chunk: chunk, offset: kept.lowerBound, piece: Self.piece(of: entry),
                                    start: kept.lowerBound - entry.offset, count: kept.count,
                                    wholeShape: entry.wholeShape, split: entry.split))
            }
        }
        return slices
    }

    /// Every global tensor of every kind with the slices of all ranks, as the manifest records them.
    public func manifestTensors(kinds: [CheckpointKind] = CheckpointKind.allCases) -> [String: [String: StoredTensor]] {
        var tensors: [String: StoredTensor] = [:]
        for rank in 0..<layout.worldSize {
            for slice in slices(rank: rank) {
                tensors[slice.name, default: StoredTensor(shape: slice.wholeShape, dtype: .f32, split: slice.split,
                                                          pieces: slice.piece.size, slices: [])]
                    .slices.append(StoredSlice(file: Self.fileName(rank: rank), key: "", piece: slice.piece.rank,
                                               start: slice.start, count: slice.count))
            }
        }
        return Dictionary(uniqueKeysWithValues: kinds.map { kind in
            (kind.rawValue, Dictionary(uniqueKeysWithValues: tensors.map { name, tensor in
                var tensor = tensor
                tensor.slices = tensor.slices.map { slice in
                    var slice = slice
                    slice.key = "\(kind.rawValue)/\(name)/\(slice.piece)/\(slice.start)"
                    return slice
                }.sorted { ($0.piece, $0.start) < ($1.piece, $1.start) }
                return (name, tensor)
            }))
        })
    }

    /// Whether tensor rank `rank` of `size` is the first to hold `entry`'s piece.
    private static func isFirstHolder(_ entry: ParameterEntry, tensorRank rank: Int, of size: Int) -> Bool {
        guard rank > 0 else { return true }
        guard entry.split != .replicated else { return false }
        return entry.split.piece(for: TensorRank(rank: rank - 1, size: size)) != entry.tensorRank
    }
}
