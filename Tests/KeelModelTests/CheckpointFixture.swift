import Foundation
import KeelCheckpoint
import KeelCore
import KeelModel
import XCTest

extension XCTestCase {
    /// A checkpoint of `config`'s initial values written by every rank of `layout`, published as training does.
    /// The moments are the weights plus 1 and 2, so a kind read from the wrong key fails.
    func write(_ config: ModelConfig, layout: CheckpointLayout, zstdLevel: Int? = nil) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("keel-sharded-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let plan = try ShardPlan(config: config, layout: layout), step = 3
        let directory = try CheckpointStore.prepare(root: root, step: step)
        var files: [String: CheckpointStore.FileRecord] = [:]
        for rank in 0..<layout.worldSize {
            let buffers = plan.tables(rank: rank).map { table in CheckpointKind.allCases.map { expectedValues($0, table: table) } }
            let file = ShardPlan.fileName(rank: rank), slices = plan.slices(rank: rank)
            files[file] = try ShardWriter.write(slices, zstdLevel: zstdLevel, from: { kind, index in
                UnsafePointer(buffers[slices[index].chunk][CheckpointKind.allCases.firstIndex(of: kind)!].pointer + slices[index].offset)
            }, to: directory.appendingPathComponent(file))
        }
        let state = TrainingState(step: step, tokens: 0, elapsedSeconds: 0, seed: 9, samplesConsumed: 0, tokenizer: "byte", config: "")
        return try CheckpointStore.publish(CheckpointManifest(step: step, layout: layout, model: config, state: state,
                                                              files: files, tensors: plan.manifestTensors(), zstdLevel: zstdLevel),
                                     root: root)
    }
}

/// What checkpoints `write` wrote hold of `kind` for `table` (a chunk of any layout).
func expectedValues(_ kind: CheckpointKind, table: ParameterTable) -> FloatBuffer {
    let buffer = FloatBuffer(count: table.count)
    table.initialize(buffer, seed: 9)
    let shift = Float(CheckpointKind.allCases.firstIndex(of: kind)!)
    for i in 0..<table.count { buffer.pointer[i] += shift }
    return buffer
}
