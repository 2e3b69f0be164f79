import Foundation
import KeelCore
import KeelModel

/// `manifest.json` of a sharded checkpoint, written last: what the checkpoint holds and where.
///
/// Every rank writes one safetensors file of the tensor elements it owns (`ShardPlan`); the manifest names,
/// for every global tensor of each kind (`model` weights, the optimizer's `exp_avg` and `exp_avg_sq`), its
/// whole shape, how tensor parallelism cut it, and the file, key and element range of each stored slice, so
/// any layout can read it back (`CheckpointReader`). It also holds the layout that wrote it, the model, the
/// training state and the size and XXH64 of every file.
public struct CheckpointManifest: Codable, Sendable {
    /// The value of `format` this version writes. Its manifest always has `manifest.json.xxh64` beside it.
    public static let currentFormat = "keel-sharded-2"
    /// The formats this version reads: the current one, and the one before, whose manifests written before
    /// `manifest.json.xxh64` existed have none (the only change), so a missing checksum file cannot be told from a lost one.
    public static let readableFormats = ["keel-sharded-1", currentFormat]
    public static let fileName = "manifest.json"

    public var format: String
    public var step: Int
    public var layout: CheckpointLayout
    public var model: ModelConfig
    public var state: TrainingState
    /// Size and checksum of every other file of the checkpoint, by name.
    public var files: [String: CheckpointStore.FileRecord]
    /// Every global tensor, by kind (`CheckpointKind`) and name.
    public var tensors: [String: [String: StoredTensor]]
    /// With a level, every slice is stored as one zstd frame of its F32 values (a U8 tensor) at that level.
    public var zstdLevel: Int?

    public init(step: Int, layout: CheckpointLayout, model: ModelConfig, state: TrainingState,
                files: [String: CheckpointStore.FileRecord], tensors: [String: [String: StoredTensor]], zstdLevel: Int? = nil) {
        format = Self.currentFormat
        self.zstdLevel = zstdLevel
        self.step = step
        self.layout = layout
        self.model = model
        self.state = state
        self.files = files
        self.tensors = tensors
    }

    enum CodingKeys: String, CodingKey {
        case format, step, layout, model, state, files, tensors
        case zstdLevel = "zstd_level"
    }

    /// Throws unless every stored tensor's slices lie within its pieces, tile each piece exactly once and are in files
    /// the manifest lists (so under its checksums), and the tokenizer is one of those files: `CheckpointReader` copies
    /// bytes by these numbers.
    public func validate() throws {
        let listed = Set(files.keys)
        if state.tokenizer != "byte" && !listed.contains(state.tokenizer) {
            throw KeelError("tokenizer \(state.tokenizer) is not one of the files it lists")
        }
        for (kind, stored) in tensors.sorted(by: { $0.key < $1.key }) {
            for (name, tensor) in stored.sorted(by: { $0.key < $1.key }) {
                if let problem = tensor.slicesProblem(listed: listed) { throw KeelError("\(kind) tensor '\(name)' \(problem)") }
            }
        }
    }

    /// The manifest as written: pretty-printed with sorted keys, so equal checkpoints have equal manifests.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

/// The kinds of tensors a checkpoint holds: the weights and AdamW's two moments, each laid out like the weights.
public enum CheckpointKind: String, CaseIterable, Sendable {
    case model
    case firstMoment = "exp_avg"
    case secondMoment = "exp_avg_sq"
}

/// The parallel layout a checkpoint was written in (readers need none of it: the slices say where everything is).
public struct CheckpointLayout: Codable, Equatable, Sendable {
    public var pipeline: Int
    public var tensor: Int
    public var data: Int
    public var virtualStages: Int
    public var zeroStage: Int
    /// The blocks of every stage, in stage order (stage = chunk × pipeline + pipeline rank).
    public var stageLayers: [Range<Int>]

    public init(pipeline: Int, tensor: Int, data: Int, virtualStages: Int, zeroStage: Int, stageLayers: [Range<Int>]) {
        self.pipeline = pipeline
        self.tensor = tensor
        self.data = data
        self.virtualStages = virtualStages
        self.zeroStage = zeroStage
        self.stageLayers = stageLayers
    }

    /// One process holding everything.
    public static func singleProcess(layers: Int) -> CheckpointLayout {
        CheckpointLayout(pipeline: 1, tensor: 1, data: 1, virtualStages: 1, zeroStage: 0, stageLayers: [0..<layers])
    }

    public var worldSize: Int { pipeline * tensor * data }

    /// e.g. "pp 2 × tp 1 × dp 2, ZeRO-1".
    public var summary: String {
        "pp \(pipeline)\(virtualStages > 1 ? " (\(virtualStages) chunks each)" : "") × tp \(tensor) × dp \(data), ZeRO-\(zeroStage)"
    }

    enum CodingKeys: String, CodingKey {
        case pipeline, tensor, data
        case virtualStages = "virtual_stages", zeroStage = "zero_stage", stageLayers = "stage_layers"
    }
}

/// One global tensor of a checkpoint.
public struct StoredTensor: Codable, Equatable, Sendable {
    public var shape: [Int]
    public var dtype: TensorDType
    /// How tensor parallelism cut it when written; the stored pieces are those of `pieces` ranks.
    public var split: TensorSplit
    public var pieces: Int
    public var slices: [StoredSlice]

    /// The elements of stored piece `piece` (of `pieces`).
    public func elements(ofPiece piece: Int) -> Int {
        split.shape(of: shape, piece: TensorRank(rank: piece, size: pieces)).reduce(1, *)
    }

    /// Why the slices cannot be read as stored pieces of this tensor (see `CheckpointManifest.validate`), or nil.
    func slicesProblem(listed: Set<String>) -> String? {
        guard shape.allSatisfy({ $0 >= 0 }), checkedProduct(shape) != nil else { return "has an impossible shape \(shape)" }
        switch split {
        case .replicated:
            guard pieces == 1 else { return "is replicated, yet stored in \(pieces) pieces" }
        case .split(let axis, let blocks, _):
            guard shape.indices.contains(axis), blocks.allSatisfy({ $0 >= 0 }), blocks.reduce(0, +) == shape[axis],
                  (1...max(1, shape[axis])).contains(pieces) else {
                return "is cut along axis \(axis) in blocks \(blocks) into \(pieces) pieces, which its shape \(shape) does not allow"
            }
        }
        // Each piece's elements: the pieces of a vocabulary that does not divide differ by a row.
        let sizes = (0..<pieces).map(elements(ofPiece:))
        var ranges = [[Range<Int>]](repeating: [], count: pieces)
        for slice in slices {
            guard listed.contains(slice.file), !slice.file.contains("/") else {
                return "has a slice in \(slice.file), which is not one of the files the manifest lists"
            }
            guard (0..<pieces).contains(slice.piece), (0...sizes[slice.piece]).contains(slice.start), slice.count >= 1,
                  slice.count <= sizes[slice.piece] - slice.start, (0...1 << 52).contains(slice.offset ?? 0) else {
                let size = (0..<pieces).contains(slice.piece) ? " of \(sizes[slice.piece]) elements" : ""
                return "has a slice outside its \(pieces) piece\(pieces == 1 ? "" : "s") (piece \(slice.piece)\(size), start \(slice.start), count \(slice.count), offset \(slice.offset ?? 0))"
            }
            ranges[slice.piece].append(slice.start..<slice.start + slice.count)
        }
        for (piece, held) in ranges.enumerated() {
            var next = 0
            for range in held.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                guard range.lowerBound == next else {
                    return range.lowerBound < next ? "has slices of piece \(piece) that overlap at element \(range.lowerBound)"
                        : "misses elements \(next)..<\(range.lowerBound) of piece \(piece)"
                }
                next = range.upperBound
            }
            if next != sizes[piece] { return "misses elements \(next)..<\(sizes[piece]) of piece \(piece)" }
        }
        return nil
    }
}

/// Elements `start ..< start + count` of piece `piece` (row-major, flattened) of a tensor, stored under `key`
/// in `file` — from its element `offset` on, when the key holds more than the slice (the flat optimizer
/// moments of a consolidated checkpoint); a sharded checkpoint stores each slice as a key of its own.
public struct StoredSlice: Codable, Equatable, Sendable {
    public var file: String
    public var key: String
    public var piece: Int
    public var start: Int
    public var count: Int
    public var offset: Int?

    public init(file: String, key: String, piece: Int, start: Int, count: Int, offset: Int? = nil) {
        self.file = file
        self.key = key
        self.piece = piece
        self.start = start
        self.count = count
        self.offset = offset
    }
}

extension TensorSplit: Codable {
    enum CodingKeys: String, CodingKey {
        case axis, blocks, pieces
    }

    /// `{}` when replicated, else the axis, blocks and (when limited) the number of pieces.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        guard case .split(let axis, let blocks, let pieces) = self else { return }
        try container.encode(axis, forKey: .axis)
        try container.encode(blocks, forKey: .blocks)
        try container.encodeIfPresent(pieces, forKey: .pieces)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let axis = try container.decodeIfPresent(Int.self, forKey: .axis) else {
            self = .replicated
            return
        }
        self = .split(axis: axis, blocks: try container.decode([Int].self, forKey: .blocks),
                      pieces: try container.decodeIfPresent(Int.self, forKey: .pieces))
    }
}
