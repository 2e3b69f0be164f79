import Foundation
import KeelCheckpoint
import KeelCore
import KeelModel
import KeelTrain
import XCTest

/// A checkpoint as Keel wrote them before they were sharded — whole weights in model.safetensors, the moments
/// as flat vectors in optimizer.safetensors, model.json, state.json and a manifest of file records only — still
/// loads, and a run resumed from it logs the losses of the run that never stopped.
final class ConsolidatedCheckpointTests: XCTestCase {
    func testAConsolidatedCheckpointResumes() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=10", "training.eval_every=0"])
        _ = try fixture.run(config, in: "straight")
        _ = try fixture.run(config, in: "old", stopAfter: 5)
        let checkpoint = fixture.root.appendingPathComponent("old/checkpoints/step_00000005")
        try consolidate(checkpoint)
        let reader = try CheckpointReader(checkpoint)
        XCTAssertNil(reader.manifest)
        XCTAssertEqual(reader.state.step, 5)

        _ = try fixture.run(config, in: "old", resume: true)
        let straight = try fixture.losses("straight"), resumed = try fixture.losses("old")
        for step in 1...10 { XCTAssertEqual(resumed[step], straight[step], "step \(step)") }
    }

    /// Rewrites sharded checkpoint `directory` in the consolidated format.
    private func consolidate(_ directory: URL) throws {
        let sharded = try CheckpointReader(directory)
        let table = ParameterTable(config: sharded.model)
        let buffers = try CheckpointKind.allCases.map { kind in
            let buffer = FloatBuffer(count: table.count)
            try sharded.load(kind, table: table, into: buffer.pointer)
            return buffer
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path)
        where file.hasPrefix("rank_") || file == "manifest.json" || file == CheckpointStore.manifestChecksumName {
            try FileManager.default.removeItem(at: directory.appendingPathComponent(file))
        }
        let encoder = JSONEncoder()
        try ModelFiles.writeWeights(table, buffers[0], to: directory.appendingPathComponent("model.safetensors"))
        try Safetensors.write([TensorSlice(name: "exp_avg", shape: [table.count], floats: buffers[1].pointer),
                               TensorSlice(name: "exp_avg_sq", shape: [table.count], floats: buffers[2].pointer)],
                              to: directory.appendingPathComponent("optimizer.safetensors"))
        try ModelFiles.writeConfig(sharded.model, to: directory.appendingPathComponent("model.json"))
        try encoder.encode(sharded.state).write(to: directory.appendingPathComponent("state.json"))
        var records: [String: CheckpointStore.FileRecord] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            records[file] = try CheckpointStore.record(of: directory.appendingPathComponent(file))
        }
        try encoder.encode(records).write(to: directory.appendingPathComponent("manifest.json"))
    }
}
