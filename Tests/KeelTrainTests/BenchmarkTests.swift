import KeelModel
import KeelTrain
import XCTest

final class BenchmarkTests: XCTestCase {
    func testPresetsMatchTheIssueShapes() {
        let names = BenchmarkPreset.all.map(\.name)
        XCTAssertEqual(names, ["gpt2-124m", "small", "gpt2-124m-llama", "small-llama", "gpt2-124m-1k"])
        let gpt2 = BenchmarkPreset.all[0]
        XCTAssertEqual(ParameterTable(config: gpt2.model).count, 124_475_904)  // GPT-2 small with vocab 50304
        XCTAssertEqual(gpt2.batch * gpt2.length, 1024)
        XCTAssertEqual(BenchmarkPreset.all[3].model.architecture, .llama)
        XCTAssertEqual(BenchmarkPreset.all[3].model.hiddenWidth, 1024)
        let long = BenchmarkPreset.all[4]
        XCTAssertEqual(ParameterTable(config: long.model).count, 124_475_904, "GPT-2 124M")
        XCTAssertEqual([long.batch, long.length, long.model.maxLength], [1, 1024, 1024], "its whole context, 1,024 tokens a step")
    }

    func testModelFlopsFollowTheConvention() {
        let config = ModelConfig(architecture: .gpt2, vocabSize: 100, layers: 2, heads: 2, width: 8, maxLength: 16)
        // 6 · P · tokens + 12 · L · T · C · tokens
        let expected: Double = 6 * 1000 * 64 + 12 * 2 * 16 * 8 * 64
        XCTAssertEqual(Benchmark.modelFlops(config, parameters: 1000, tokens: 64, length: 16), expected)
    }

    func testLookupTablesAreNotCountedAsMatrixProducts() {
        let gpt2 = BenchmarkPreset.all[0].model, llama = BenchmarkPreset.all[2].model
        XCTAssertEqual(Benchmark.multipliedParameters(gpt2), 124_475_904 - 1024 * 768)
        XCTAssertEqual(Benchmark.multipliedParameters(llama), ParameterTable(config: llama).count - 50_304 * 768)
    }

    /// The profile of a tiny Llama: its FLOP counts are the model's (2·tokens per weight of every matrix
    /// product forward, twice that backward), and the report's shares add up to the step.
    func testBenchmarkAndProfileOfATinyModel() throws {
        let preset = BenchmarkPreset(
            name: "tiny", model: ModelConfig(architecture: .llama, vocabSize: 64, layers: 2, heads: 2, kvHeads: 1, width: 16,
                                             maxLength: 32), batch: 2, length: 32)
        let profiler = Profiler()
        let result = try Benchmark.run(preset, steps: 3, warmup: 1, sgemmGFLOPs: 100, profiler: profiler)
        XCTAssertEqual(result.msPerStep.count, 3)
        XCTAssertTrue(result.msPerStep.allSatisfy { $0 > 0 })
        XCTAssertEqual(result.tokensPerStep, 64)
        XCTAssertEqual(result.parameters, ParameterTable(config: preset.model).count)
        XCTAssertGreaterThan(result.peakRSSMB, 0)

        let work = profiler.perStep()
        let matrixWeights = ParameterTable(config: preset.model).entries.filter { $0.role == .matrix }.map(\.count).reduce(0, +)
        XCTAssertEqual(work["matmul forward"]?.flops, 2 * 64 * Double(matrixWeights))
        XCTAssertEqual(work["matmul backward"]?.flops, 4 * 64 * Double(matrixWeights))
        XCTAssertGreaterThan(work["attention forward"]?.flops ?? 0, 0)
        XCTAssertEqual(work["optimizer"]?.bytes, 16 * Double(result.parameters))

        let report = profiler.report()
        var shares: [String: Double] = [:]
        for line in report.split(separator: "\n").dropFirst() {
            let name = String(line.prefix(22)).trimmingCharacters(in: .whitespaces)
            let share = try XCTUnwrap(line.split(separator: " ").first { $0.hasSuffix("%") }, String(line))
            shares[name] = Double(share.dropLast())
        }
        for kind in ["matmul forward", "matmul backward", "attention forward", "attention backward", "norm backward",
                     "activation forward", "loss forward", "embedding backward", "optimizer", "data", "other (idle, glue)"] {
            XCTAssertNotNil(shares[kind], "profile lacks \(kind):\n\(report)")
        }
        XCTAssertEqual(shares["step"], 100)
        // Each share is rounded to 0.1%.
        XCTAssertEqual(shares.filter { $0.key != "step" }.values.reduce(0, +), 100, accuracy: 0.05 * Double(shares.count))
    }
}
