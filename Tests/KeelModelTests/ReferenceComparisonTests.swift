import Foundation
import KeelCheckpoint
import KeelCore
import KeelModel
import XCTest

/// The whole model — loss, logits and every parameter's gradient — against the independent float64 NumPy
/// implementation in Tests/Reference/reference.py.
final class ReferenceComparisonTests: XCTestCase {
    func testGPT2MatchesNumPyReference() throws {
        try compareWithReference(ModelFixtures.gpt2)
    }

    func testLlamaMatchesNumPyReference() throws {
        try compareWithReference(ModelFixtures.llama)
    }

    /// The token table is both the input embedding and the output head: its gradient sums both uses.
    func testTiedLlamaMatchesNumPyReference() throws {
        XCTAssertFalse(ParameterTable(config: ModelFixtures.tiedLlama).entries.contains { $0.name == "lm_head.weight" })
        try compareWithReference(ModelFixtures.tiedLlama)
    }

    /// 40 × 7 = 280 rows: the output head and the loss run in two chunks of rows (256 + 24).
    func testBothMatchAcrossLossChunks() throws {
        try compareWithReference(ModelFixtures.gpt2, batch: 40)
        try compareWithReference(ModelFixtures.llama, batch: 40)
    }

    private func compareWithReference(_ config: ModelConfig, batch: Int = 2) throws {
        let length = 7
        let model = try ModelFixtures.randomModel(config, seed: 11)
        let tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 3)
        let loss = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: batch, length: length)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-reference-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let configURL = directory.appendingPathComponent("config.json")
        let paramsURL = directory.appendingPathComponent("params.safetensors")
        let outURL = directory.appendingPathComponent("out.safetensors")
        try JSONEncoder().encode(config).write(to: configURL)
        var slices = model.table.entries.map {
            TensorSlice(name: $0.name, shape: $0.shape, floats: model.parameters.pointer + $0.offset)
        }
        try tokens.all.withUnsafeBytes { bytes in
            slices.append(TensorSlice(name: "tokens", dtype: .i32, shape: [batch, length + 1], bytes: bytes))
            try Safetensors.write(slices, to: paramsURL)
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", ModelFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/reference.py").path,
                             "--config", configURL.path, "--params", paramsURL.path, "--out", outURL.path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "reference.py failed")
        let reference = try SafetensorsFile(url: outURL)

        let referenceLoss = try reference.doubles("loss")[0]
        XCTAssertEqual(Double(loss), referenceLoss, accuracy: 1e-4 * abs(referenceLoss))

        // Logits of the same forward pass without targets.
        tokens.inputs.withUnsafeBufferPointer { i in
            _ = model.forward(inputs: i.baseAddress!, targets: nil, batch: batch, length: length)
        }
        let referenceLogits = try reference.doubles("logits")
        let logits = (0..<(batch * length)).flatMap { Array(model.logits(row: $0)).map(Double.init) }
        XCTAssertLessThan(relativeError(logits, referenceLogits), 1e-4, "logits")

        for entry in model.table.entries {
            let expected = try reference.doubles("grad." + entry.name)
            let actual = (0..<entry.count).map { Double(model.gradients.pointer[entry.offset + $0]) }
            XCTAssertEqual(expected.count, entry.count, entry.name)
            XCTAssertLessThan(relativeError(actual, expected), 1e-4, "gradient of \(entry.name)")
        }
    }

    /// ‖a − b‖ / ‖b‖.
    private func relativeError(_ a: [Double], _ b: [Double]) -> Double {
        guard a.count == b.count else { return .infinity }
        var difference = 0.0, norm = 0.0
        for i in 0..<a.count {
            difference += (a[i] - b[i]) * (a[i] - b[i])
            norm += b[i] * b[i]
        }
        return (difference / max(norm, 1e-30)).squareRoot()
    }
}
