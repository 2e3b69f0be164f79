import Foundation
@testable import KeelCheckpoint
import KeelCore
import KeelModel
import XCTest

/// A sharded checkpoint holds every element of the model exactly once, whatever the layout that writes it, and
/// reads back into any other layout as the values that layout's ranks hold.
final class ShardedCheckpointTests: XCTestCase {
    private let layers = 4

    private func config(_ architecture: Architecture) -> ModelConfig {
        // One key/value head: with 4 tensor ranks, each piece of k and v is shared by 4 ranks. A vocabulary of 37,
        // which neither 2 nor 4 ranks divide: their rows of the token table and the head differ by one.
        ModelConfig(architecture: architecture, vocabSize: 37, layers: layers, heads: 4, kvHeads: 1, width: 32, maxLength: 8)
    }

    /// pipeline × tensor × data, chunks per pipeline rank, ZeRO stage.
    private var layouts: [CheckpointLayout] {
        let stages = { (count: Int) in (0..<count).map { ($0 * self.layers / count)..<(($0 + 1) * self.layers / count) } }
        return [
            CheckpointLayout(pipeline: 1, tensor: 1, data: 1, virtualStages: 1, zeroStage: 0, stageLayers: stages(1)),
            CheckpointLayout(pipeline: 1, tensor: 1, data: 3, virtualStages: 1, zeroStage: 1, stageLayers: stages(1)),
            CheckpointLayout(pipeline: 2, tensor: 1, data: 2, virtualStages: 2, zeroStage: 1, stageLayers: stages(4)),
            CheckpointLayout(pipeline: 1, tensor: 4, data: 1, virtualStages: 1, zeroStage: 0, stageLayers: stages(1)),
            CheckpointLayout(pipeline: 2, tensor: 2, data: 2, virtualStages: 1, zeroStage: 3, stageLayers: stages(2)),
        ]
    }

    func testEveryElementIsWrittenExactlyOnce() throws {
        for architecture in Architecture.allCases {
            let config = config(architecture), whole = ParameterTable(config: config)
            for layout in layouts {
                let tensors = try ShardPlan(config: config, layout: layout).manifestTensors()
                XCTAssertEqual(Set(tensors.keys), Set(CheckpointKind.allCases.map(\.rawValue)))
                let model = try XCTUnwrap(tensors[CheckpointKind.model.rawValue])
                XCTAssertEqual(Set(model.keys), Set(whole.entries.map(\.name)), "\(architecture) \(layout.summary)")
                for (name, tensor) in model {
                    XCTAssertEqual((0..<tensor.pieces).map(tensor.elements(ofPiece:)).reduce(0, +), tensor.shape.reduce(1, *))
                    for piece in 0..<tensor.pieces {
                        let pieceCount = tensor.elements(ofPiece: piece)
                        var next = 0
                        for slice in tensor.slices where slice.piece == piece {
                            XCTAssertEqual(slice.start, next, "\(name) piece \(piece) in \(layout.summary): gap or overlap")
                            next = slice.start + slice.count
                        }
                        XCTAssertEqual(next, pieceCount, "\(name) piece \(piece) in \(layout.summary)")
                    }
                }
            }
        }
    }

    /// Every layout's ranks write their (initial) values; every layout reads each checkpoint back and gets, rank by
    /// rank and chunk by chunk, exactly the values it would hold itself. The moments are written as the weights
    /// plus 1 and 2, so a kind read from the wrong key fails.
    func testEveryLayoutReadsEveryOther() throws {
        for architecture in Architecture.allCases {
            let config = config(architecture)
            for written in layouts {
                let directory = try write(config, layout: written)
                let reader = try CheckpointReader(directory)
                for read in layouts {
                    let plan = try ShardPlan(config: config, layout: read)
                    for rank in 0..<read.worldSize {
                        for table in plan.tables(rank: rank) {
                            let expected = FloatBuffer(count: table.count), actual = FloatBuffer(count: table.count)
                            table.initialize(expected, seed: 9)
                            for (kind, shift) in zip(CheckpointKind.allCases, [Float(0), 1, 2]) {
                                try reader.load(kind, table: table, into: actual.pointer)
                                for i in 0..<table.count where actual.pointer[i] != expected.pointer[i] + shift {
                                    XCTFail("\(architecture): \(kind) written by \(written.summary), read by \(read.summary) rank \(rank): element \(i) differs")
                                    break
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Compressed with zstd, a checkpoint reads back the same values into another layout, its files hold zstd
    /// frames (U8), and a damaged frame is named.
    func testCompressedCheckpointReadsTheSame() throws {
        let config = config(.llama), written = layouts[4], read = layouts[1]
        let directory = try write(config, layout: written, zstdLevel: 3)
        let reader = try CheckpointReader(directory)
        XCTAssertEqual(reader.manifest?.zstdLevel, 3)
        let plan = try ShardPlan(config: config, layout: read)
        for rank in 0..<read.worldSize {
            for table in plan.tables(rank: rank) {
                let expected = FloatBuffer(count: table.count), actual = FloatBuffer(count: table.count)
                table.initialize(expected, seed: 9)
                try reader.load(.secondMoment, table: table, into: actual.pointer)
                XCTAssertTrue((0..<table.count).allSatisfy { actual.pointer[$0] == expected.pointer[$0] + 2 }, "rank \(rank)")
            }
        }
        let file = try SafetensorsFile(url: directory.appendingPathComponent(ShardPlan.fileName(rank: 0)))
        XCTAssertTrue(file.entries.values.allSatisfy { $0.dtype == .u8 })

        // A frame that is not zstd: rewritten in place with its checksum updated, so only decompression can tell.
        var manifest = try XCTUnwrap(CheckpointStore.readManifest(directory))
        let key = try XCTUnwrap(manifest.tensors["model"]?["model.norm.weight"]?.slices.first)
        let url = directory.appendingPathComponent(key.file)
        var bytes = try Data(contentsOf: url)
        let header = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let range = try SafetensorsFile(url: url).entry(key.key).range
        for i in range { bytes[8 + header + i] = 0x55 }
        try bytes.write(to: url)
        manifest.files[key.file] = try CheckpointStore.record(of: url)
        try CheckpointStore.writeManifest(manifest.encoded(), into: directory)
        assertLoadingFails(config, from: directory, saying: "'\(key.key)' does not decompress (zstd level 3)")
    }

    /// Ranks that check a checkpoint together each read their share of its files (rank r of n the r-th, (r + n)-th, …
    /// in name order): together every file, each once; a damaged file is found by the rank whose share holds it.
    func testRanksCheckTheirShareOfTheFiles() throws {
        let directory = try write(config(.llama), layout: layouts[1])
        let names = try CheckpointStore.inspect(directory).map(\.name)
        XCTAssertEqual(names, ["rank_00000.safetensors", "rank_00001.safetensors", "rank_00002.safetensors"])
        let shares = try (0..<2).map { rank in try CheckpointStore.inspect(directory, share: (rank, 2)).map(\.name) }
        XCTAssertEqual(shares, [[names[0], names[2]], [names[1]]])
        let damaged = directory.appendingPathComponent(names[1])
        let handle = try FileHandle(forUpdating: damaged)
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data([0xFF]))
        try handle.close()
        XCTAssertEqual(try CheckpointStore.inspect(directory, share: (0, 2)).compactMap(\.problem), [])
        XCTAssertEqual(try CheckpointStore.inspect(directory, share: (1, 2)).compactMap(\.problem), ["\(names[1]) fails its checksum"])
    }

    func testAMissingSliceIsNamed() throws {
        let config = config(.llama), layout = layouts[1]
        let directory = try write(config, layout: layout)
        var manifest = try XCTUnwrap(CheckpointStore.readManifest(directory))
        manifest.tensors["model"]!["model.norm.weight"]!.slices.removeLast()
        try CheckpointStore.writeManifest(manifest.encoded(), into: directory)
        assertLoadingFails(config, from: directory, saying: "is damaged: its manifest's model tensor 'model.norm.weight' misses elements")
    }

    /// In the background the writer copies the live buffers first: once `waitUntilCopied` returns, changing them
    /// changes nothing in the file, which holds the values of when the write began. A NaN weight writes nothing.
    func testBackgroundWriteHoldsTheValuesOfWhenItBegan() throws {
        let config = config(.gpt2), layout = layouts[0]
        let slices = try ShardPlan(config: config, layout: layout).slices(rank: 0)
        let table = ParameterTable(config: config), live = FloatBuffer(count: table.count)
        table.initialize(live, seed: 4)
        let before = Array(UnsafeBufferPointer(start: live.pointer, count: table.count))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-writer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let writer = ShardWriter(slices: slices), url = directory.appendingPathComponent("rank_00000.safetensors")
        writer.begin(to: url, from: { _, index in UnsafePointer(live.pointer + slices[index].offset) })
        XCTAssertTrue(writer.isPending)
        writer.waitUntilCopied()
        for i in 0..<table.count { live.pointer[i] = -1 }
        guard case .written(let record, _) = writer.finish() else { return XCTFail("the write failed") }
        XCTAssertFalse(writer.isPending)
        XCTAssertEqual(record, try CheckpointStore.record(of: url))
        let file = try SafetensorsFile(url: url)
        for slice in slices {
            let stored = try file.doubles(slice.key(.model)).map(Float.init)
            XCTAssertEqual(stored, Array(before[slice.offset..<(slice.offset + slice.count)]), slice.name)
        }

        live.pointer[7] = .nan
        writer.begin(to: directory.appendingPathComponent("again.safetensors"), from: { _, index in UnsafePointer(live.pointer + slices[index].offset) })
        guard case .nonFinite(let slice) = writer.finish() else { return XCTFail("a NaN weight was written") }
        XCTAssertEqual(slices[slice].name, table.entries.first { $0.range.contains(7) }!.name)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.appendingPathComponent("again.safetensors").path))
    }

    /// When the system cannot start the writer's thread (asked here for a stack no system gives; in a job, a machine
    /// out of memory), the file is written at once, in the foreground: with Foundation's Thread, which does not say
    /// that it failed to start, the training loop waited for the copy forever.
    func testAWriteWithoutAThreadIsDoneInTheForeground() throws {
        XCTAssertFalse(DetachedThread.start(stackSize: 1 << 50) { XCTFail("a thread with a petabyte of stack ran") })
        let config = config(.gpt2)
        let slices = try ShardPlan(config: config, layout: layouts[0]).slices(rank: 0)
        let table = ParameterTable(config: config), live = FloatBuffer(count: table.count)
        table.initialize(live, seed: 4)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-writer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let writer = ShardWriter(slices: slices), url = directory.appendingPathComponent("rank_00000.safetensors")
        writer.threadStackSize = 1 << 50
        let priority = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        writer.begin(to: url, from: { _, index in UnsafePointer(live.pointer + slices[index].offset) })
        XCTAssertTrue(writer.isFinished, "written before begin returned")
        writer.waitUntilCopied()
        guard case .written(let record, _) = writer.finish() else { return XCTFail("the write failed") }
        XCTAssertEqual(record, try CheckpointStore.record(of: url))
        // The background thread lowers its own priority for the write; in the foreground, training's stays.
        XCTAssertEqual(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0), priority)
    }

    /// Loading the weights of `config` from `directory` throws an error containing `fragment`.
    private func assertLoadingFails(_ config: ModelConfig, from directory: URL, saying fragment: String,
                                    line: UInt = #line) {
        let table = ParameterTable(config: config), buffer = FloatBuffer(count: table.count)
        XCTAssertThrowsError(try CheckpointReader(directory).load(.model, table: table, into: buffer.pointer), line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "\(error)", line: line)
        }
    }
}
