import CZstd
import Foundation
import KeelCore
import KeelModel

/// A checkpoint opened for reading into any layout.
///
/// A sharded checkpoint (`CheckpointManifest`) is read slice by slice: a piece in the layout it was written in
/// straight from its slices, anything else by assembling the whole tensor — one at a time — and cutting the
/// piece wanted from it. A consolidated checkpoint, as Keel wrote them before checkpoints were sharded
/// (`model.safetensors`, `optimizer.safetensors`, `model.json`, `state.json`), reads through the same path:
/// its tensors are described as unsplit ones with a single slice each.
public final class CheckpointReader {
    public let directory: URL
    public let model: ModelConfig
    public let state: TrainingState
    /// The manifest of a sharded checkpoint; nil for a consolidated one.
    public let manifest: CheckpointManifest?
    private let tensors: [String: [String: StoredTensor]]
    private var files: [String: SafetensorsFile] = [:]

    /// The checkpoint's tokenizer as `loadTokenizer` takes it: the path of the file its state names (tokenizer.json,
    /// cl100k_base.tiktoken), or "byte".
    public var tokenizerPath: String {
        state.tokenizer == "byte" ? "byte" : directory.appendingPathComponent(state.tokenizer).path
    }

    /// The checkpoint by its content: "files " and an XXH64 over its manifest's file names and checksums (the same
    /// checkpoint gives the same, wherever it lies and however it is named); for a consolidated one, which has no
    /// manifest, over its model and state files (its step, seed and data position: not its weights, which would
    /// take reading them all).
    public var identity: String {
        if let files = manifest?.files {
            let records = files.keys.sorted().map { "\($0) \(files[$0]!.xxh64)" }.joined(separator: "\n")
            return String(format: "files %016llx", XXH64.hash(Array(records.utf8)))
        }
        let described = [ModelFiles.configFile, "state.json"].map { FileManager.default.contents(atPath: directory.appendingPathComponent($0).path) ?? Data() }
        return String(format: "state %016llx", XXH64.hash(Array(described.reduce(Data(), +))))
    }

    /// The bytes of the checkpoint's tokenizer file, nil for the byte tokenizer: two checkpoints read text as the
    /// same tokens when these are equal. A file the state names that cannot be read is an error, not the byte
    /// tokenizer.
    public func tokenizerContents() throws -> Data? {
        guard state.tokenizer != "byte" else { return nil }
        guard let contents = FileManager.default.contents(atPath: tokenizerPath) else {
            throw KeelError("checkpoint \(directory.path): its tokenizer \(state.tokenizer) cannot be read")
        }
        return contents
    }

    /// Opens `directory`, first checking every file's size and checksum unless `verify` is false (the caller
    /// just did, e.g. `CheckpointStore.latestValid`).
    public init(_ directory: URL, verify: Bool = true) throws {
        if verify { try CheckpointStore.verify(directory) }
        self.directory = directory
        if let manifest = try CheckpointStore.readManifest(directory) {
            self.manifest = manifest
            model = manifest.model
            state = manifest.state
            tensors = manifest.tensors
        } else {
            manifest = nil
            model = try ModelFiles.readConfig(from: directory.appendingPathComponent(ModelFiles.configFile))
            state = try TrainingState.read(from: directory.appendingPathComponent("state.json"))
            tensors = Self.consolidatedTensors(model)
        }
        do { try model.validate() } catch {
            throw KeelError("checkpoint \(directory.path): \(error)")
        }
    }

    /// Opens what a user's `--checkpoint` names (`ModelFiles.resolveCheckpoint`): a checkpoint directory, verified
    /// here, or a run directory's newest valid checkpoint, verified while it was found (not twice). The ranks of a
    /// group verify together with `share` and `agree` (`CheckpointStore.verify(_:share:agree:)`), each reading its
    /// share of the files rather than all of them.
    public convenience init(resolving path: String, share: (index: Int, count: Int) = (0, 1),
                            agree: (_ candidate: URL, _ damaged: Bool) throws -> Bool = { $1 }) throws {
        let directory = try ModelFiles.resolveCheckpoint(path, share: share, agree: agree)
        if directory.standardizedFileURL == URL(fileURLWithPath: path).standardizedFileURL {
            try CheckpointStore.verify(directory, share: share, agree: agree)
        }
        try self.init(directory, verify: false)
    }

    /// The whole model on one process.
    public func loadModel() throws -> Transformer {
        // Every tensor is read from the checkpoint: a random initialisation first would only cost time.
        let transformer = try Transformer(config: model, seed: 0, initialized: false)
        try load(.model, table: transformer.table, into: transformer.parameters.pointer)
        return transformer
    }

    /// Fills the tensors of `table` (one rank's chunk, in any layout) with those of `kind`: element `i` of the
    /// chunk's buffer goes to `destination[i - base]`. With `range`, only the buffer's elements in it (a ZeRO
    /// shard), which must start at or after `base`.
    public func load(_ kind: CheckpointKind, table: ParameterTable, into destination: UnsafeMutablePointer<Float>,
                     base: Int = 0, only range: Range<Int>? = nil) throws {
        for (entry, elements) in Self.wanted(table, only: range) {
            try read(kind, entry.name, shape: entry.wholeShape, split: entry.split, piece: ShardPlan.piece(of: entry),
                     elements: elements, into: destination + (entry.offset + elements.lowerBound - base))
        }
    }

    /// The tensors of `table` with elements in `range` (all of them without one), and which of each tensor's
    /// elements those are.
    private static func wanted(_ table: ParameterTable, only range: Range<Int>?) -> [(ParameterEntry, Range<Int>)] {
        table.entries.compactMap { entry in
            let kept = entry.range.clamped(to: range ?? entry.range)
            return kept.isEmpty ? nil : (entry, (kept.lowerBound - entry.offset)..<(kept.upperBound - entry.offset))
        }
    }

    /// The files `load` reads for the same arguments: what a rank needs on its machine to restore its share.
    public func files(for kind: CheckpointKind, table: ParameterTable, only range: Range<Int>? = nil) throws -> Set<String> {
        var names: Set<String> = []
        for (entry, elements) in Self.wanted(table, only: range) {
            let stored = try storedTensor(kind, entry.name, shape: entry.wholeShape)
            let piece = ShardPlan.piece(of: entry)
            // As `read` does: the piece's own slices, or every piece's when the tensor must be assembled whole.
            let wanted = piece.size == stored.pieces ? [(piece.rank, elements)]
                : (0..<stored.pieces).map { ($0, 0..<stored.elements(ofPiece: $0)) }
            for (p, range) in wanted {
                names.formUnion(overlapping(stored, piece: p, elements: range).map(\.slice.file))
            }
        }
        return names
    }

    /// Copies `elements` of piece `piece` (of a tensor of `shape` cut as `split`) of tensor `name` to `destination`.
    public func read(_ kind: CheckpointKind, _ name: String, shape: [Int], split: TensorSplit, piece: TensorRank,
                     elements: Range<Int>, into destination: UnsafeMutablePointer<Float>) throws {
        let stored = try storedTensor(kind, name, shape: shape)
        if piece.size == stored.pieces {
            try assemble(stored, name, piece: piece.rank, elements: elements, into: destination)
            return
        }
        // Written in another tensor-parallel layout: the whole tensor from its pieces, then the piece wanted.
        let count = shape.reduce(1, *)
        let whole = FloatBuffer(count: count)
        let scratch = FloatBuffer(count: max((0..<stored.pieces).map(stored.elements(ofPiece:)).max()!,
                                             split.shape(of: shape, piece: piece).reduce(1, *)))
        for p in 0..<stored.pieces {
            try assemble(stored, name, piece: p, elements: 0..<stored.elements(ofPiece: p), into: scratch.pointer)
            stored.split.copy(whole.pointer, shape: shape, scratch.pointer, rank: TensorRank(rank: p, size: stored.pieces),
                              gathering: true)
        }
        split.copy(whole.pointer, shape: shape, scratch.pointer, rank: piece)
        destination.update(from: scratch.pointer + elements.lowerBound, count: elements.count)
    }

    /// The stored tensor `name` of `kind`, checked to be F32 of `shape`.
    private func storedTensor(_ kind: CheckpointKind, _ name: String, shape: [Int]) throws -> StoredTensor {
        guard let stored = tensors[kind.rawValue]?[name] else {
            throw KeelError("checkpoint \(directory.path) holds no \(kind.rawValue) tensor '\(name)'")
        }
        guard stored.shape == shape, stored.dtype == .f32 else {
            throw KeelError("checkpoint \(directory.path): \(kind.rawValue) tensor '\(name)' is \(stored.dtype.rawValue) \(stored.shape), expected F32 \(shape)")
        }
        return stored
    }

    /// The slices of stored piece `piece` that hold some of `elements`, each with the elements it holds.
    private func overlapping(_ stored: StoredTensor, piece: Int, elements: Range<Int>) -> [(slice: StoredSlice, overlap: Range<Int>)] {
        stored.slices.compactMap { slice in
            let overlap = elements.clamped(to: slice.start..<(slice.start + slice.count))
            return slice.piece == piece && !overlap.isEmpty ? (slice, overlap) : nil
        }
    }

    /// Copies `elements` of stored piece `piece` from the slices that hold them.
    private func assemble(_ stored: StoredTensor, _ name: String, piece: Int, elements: Range<Int>,
                          into destination: UnsafeMutablePointer<Float>) throws {
        var copied = 0
        for (slice, overlap) in overlapping(stored, piece: piece, elements: elements) {
            let file = try open(slice.file)
            let at = (slice.offset ?? 0) + overlap.lowerBound - slice.start
            let target = destination + (overlap.lowerBound - elements.lowerBound)
            try file.withBytes(of: slice.key) { bytes in
                let dtype = try file.entry(slice.key).dtype
                if let level = manifest?.zstdLevel {
                    // One zstd frame of the whole slice: decompressed, then the overlap copied.
                    guard dtype == .u8 else { throw KeelError("\(file.url.path): tensor '\(slice.key)' is \(dtype.rawValue), not a zstd frame (U8)") }
                    let values = FloatBuffer(count: slice.count)
                    let size = ZSTD_decompress(values.pointer, 4 * slice.count, bytes.baseAddress, bytes.count)
                    guard ZSTD_isError(size) == 0, size == 4 * slice.count else {
                        let reason = ZSTD_isError(size) != 0 ? String(cString: ZSTD_getErrorName(size)) : "\(size) bytes, expected \(4 * slice.count)"
                        throw KeelError("\(file.url.path): tensor '\(slice.key)' does not decompress (zstd level \(level)): \(reason)")
                    }
                    target.update(from: values.pointer + (at - (slice.offset ?? 0)), count: overlap.count)
                    return
                }
                guard dtype == .f32, bytes.count >= 4 * (at + overlap.count) else {
                    throw KeelError("\(file.url.path): tensor '\(slice.key)' is too short for its slice of '\(name)'")
                }
                UnsafeMutableRawPointer(target).copyMemory(from: bytes.baseAddress! + 4 * at, byteCount: 4 * overlap.count)
            }
            copied += overlap.count
        }
        guard copied == elements.count else {
            throw KeelError("checkpoint \(directory.path): the slices of '\(name)' miss elements of piece \(piece) (\(copied) of \(elements.count) found)")
        }
    }

    private func open(_ file: String) throws -> SafetensorsFile {
        if let opened = files[file] { return opened }
        let opened = try SafetensorsFile(url: directory.appendingPathComponent(file))
        files[file] = opened
        return opened
    }

    /// A consolidated checkpoint's tensors: whole weights by name in `model.safetensors`, the moments as flat
    /// vectors laid out like the whole model's parameter table.
    private static func consolidatedTensors(_ config: ModelConfig) -> [String: [String: StoredTensor]] {
        let table = ParameterTable(config: config)
        let stored = { (file: String, key: (ParameterEntry) -> String, offset: (ParameterEntry) -> Int?) in
            Dictionary(uniqueKeysWithValues: table.entries.map { entry in
                (entry.name, StoredTensor(shape: entry.shape, dtype: .f32, split: entry.split, pieces: 1, slices: [
                    StoredSlice(file: file, key: key(entry), piece: 0, start: 0, count: entry.count, offset: offset(entry)),
                ]))
            })
        }
        return [
            CheckpointKind.model.rawValue: stored(ModelFiles.weightsFile, { $0.name }, { _ in nil }),
            CheckpointKind.firstMoment.rawValue: stored("optimizer.safetensors", { _ in "exp_avg" }, { $0.offset }),
            CheckpointKind.secondMoment.rawValue: stored("optimizer.safetensors", { _ in "exp_avg_sq" }, { $0.offset }),
        ]
    }
}
