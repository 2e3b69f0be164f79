import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelKernels
import KeelModel
import KeelTrain
import XCTest

final class TrainingTests: XCTestCase {
    /// A tiny model drives the loss on one fixed batch close to zero, for both families.
    func testTinyModelOverfitsOneBatch() throws {
        for architecture in Architecture.allCases {
            let config = ModelConfig(architecture: architecture, vocabSize: 30, layers: 2, heads: 2, kvHeads: 1,
                                     width: 32, maxLength: 16)
            let model = try Transformer(config: config, seed: 1)
            var random = RandomStream(seed: 9)
            let batch = 2, length = 16
            let inputs = (0..<(batch * length)).map { _ in Int32(random.nextInt(below: 30)) }
            let targets = (0..<(batch * length)).map { _ in Int32(random.nextInt(below: 30)) }
            let m = FloatBuffer(count: model.table.count), v = FloatBuffer(count: model.table.count)
            let groups = model.table.entries.map { (range: $0.range, decays: false) }
            var loss: Float = .infinity
            for step in 1...300 {
                model.gradients.zero()
                loss = model.forward(inputs: inputs, targets: targets, batch: batch, length: length, lossScale: 1)
                model.backward()
                AdamW.update(params: model.parameters.pointer, grads: model.gradients.pointer, m: m.pointer, v: v.pointer,
                             groups: groups, learningRate: 1e-2, step: step, settings: AdamWSettings(weightDecay: 0))
            }
            XCTAssertLessThan(loss, 0.1, "\(architecture) did not overfit one batch")
        }
    }

    /// Same config and seed: bit-identical per-step losses (compared as logged text).
    func testSameSeedGivesIdenticalLosses() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=8"])
        _ = try fixture.run(config, in: "a")
        _ = try fixture.run(config, in: "b")
        let a = try fixture.losses("a"), b = try fixture.losses("b")
        XCTAssertEqual(a.count, 8)
        XCTAssertEqual(a, b)
        // And the seed matters: another seed gives other losses.
        _ = try fixture.run(try fixture.config(["training.steps=8", "training.seed=7"]), in: "c")
        XCTAssertNotEqual(try fixture.losses("c"), a)
    }

    /// 20 steps straight equal 10 steps, a stop, and a resume to 20 — for both families, with
    /// gradient accumulation.
    func testResumeIsBitExact() throws {
        for arch in ["gpt2", "llama"] {
            let fixture = try TrainFixture()
            let straight = try fixture.config(["training.grad_accum=2"], arch: arch)
            _ = try fixture.run(straight, in: "straight")
            _ = try fixture.run(straight, in: "split", stopAfter: 10)
            XCTAssertEqual(fixture.checkpoints("split"), ["step_00000005", "step_00000010"])
            _ = try fixture.run(straight, in: "split", resume: true)
            let a = try fixture.losses("straight"), b = try fixture.losses("split")
            XCTAssertEqual(a.count, 20)
            XCTAssertEqual(b.count, 20, "resumed run must log each step once")
            for step in 11...20 { XCTAssertEqual(a[step], b[step], "\(arch) step \(step)") }
        }
    }

    /// The same on a prepared BPE dataset: the loader's position is restored from the checkpoint.
    func testResumeOnAPreparedDatasetIsBitExact() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        let config = try fixture.config(on: dataset)
        // The model's vocabulary defaults to the dataset's (the tiny corpus runs out of merges before 320).
        XCTAssertEqual(config.model.vocabSize, try ShardManifest.read(from: dataset).vocabSize)
        _ = try fixture.run(config, in: "straight")
        _ = try fixture.run(config, in: "split", stopAfter: 10)
        _ = try fixture.run(config, in: "split", resume: true)
        let a = try fixture.losses("straight"), b = try fixture.losses("split")
        XCTAssertEqual(a.count, 20)
        for step in 1...20 { XCTAssertEqual(a[step], b[step], "step \(step)") }
        let state = try CheckpointReader(fixture.root.appendingPathComponent("split/checkpoints/step_00000020")).state
        XCTAssertEqual(state.samplesConsumed, 20 * 4)
        XCTAssertEqual(state.tokenizer, "tokenizer.json")
    }

    func testTrainingLowersValidationLossBelowUnigram() throws {
        let fixture = try TrainFixture()
        let summary = try fixture.run(try fixture.config(["training.steps=60", "training.eval_every=0"]), in: "run")
        XCTAssertLessThan(summary.finalValidationLoss!, summary.initialValidationLoss!)
        XCTAssertLessThan(Double(summary.finalValidationLoss!), summary.unigramLoss)
    }

    /// `training.precision = "bf16"` trains as well as fp32 on the fixture corpus, and is deterministic.
    func testBFloat16TrainingTracksFloat32() throws {
        let fixture = try TrainFixture()
        let steps = ["training.steps=60", "training.eval_every=0"]
        let fp32 = try fixture.run(try fixture.config(steps), in: "fp32")
        let bf16 = try fixture.run(try fixture.config(steps + ["training.precision=\"bf16\""]), in: "bf16")
        _ = try fixture.run(try fixture.config(steps + ["training.precision=\"bf16\""]), in: "bf16-again")
        XCTAssertEqual(try fixture.losses("bf16"), try fixture.losses("bf16-again"))
        XCTAssertNotEqual(try fixture.losses("bf16"), try fixture.losses("fp32"))
        XCTAssertLessThan(Double(bf16.finalValidationLoss!), bf16.unigramLoss)
        XCTAssertEqual(Double(bf16.finalValidationLoss!), Double(fp32.finalValidationLoss!),
                       accuracy: 0.02 * Double(fp32.finalValidationLoss!))
    }

    /// Every step record has its fields, and the validation losses the run returned are the ones in the file,
    /// bit for bit.
    func testMetricsHaveRequiredFieldsAndExactFloats() throws {
        let fixture = try TrainFixture()
        let summary = try fixture.run(try fixture.config(["training.steps=5"]), in: "run")
        let text = try String(contentsOf: fixture.root.appendingPathComponent("run/metrics.jsonl"), encoding: .utf8)
        var stepRecords = 0
        var validation: [Float] = []
        for line in text.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if object["loss"] != nil {
                stepRecords += 1
                for key in ["step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"] {
                    XCTAssertNotNil(object[key], "missing \(key)")
                }
            }
            if object["val_loss"] != nil { validation.append(try XCTUnwrap(MetricsText.float("val_loss", in: line))) }
        }
        XCTAssertEqual(stepRecords, 5)
        // Before step 1, and at step 5 (both eval_every and the last step).
        XCTAssertEqual(validation.map(\.bitPattern), [summary.initialValidationLoss!, summary.finalValidationLoss!].map(\.bitPattern))
    }

    /// A checkpoint's record keeps its fields in order, "step" then "checkpoint_s", as every record does: its kind (the
    /// first field after "step") is what lets a disk checkpoint's record drop a snapshot's `in_memory` from the metrics
    /// endpoint. (Built as a dictionary, the order was the hash's.)
    func testCheckpointRecordsKeepTheirFieldOrder() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=6", "checkpoint.every=2", "checkpoint.snapshot_every=1",
                                                "checkpoint.snapshot_dir=\"\(fixture.root.path)/shm\""]), in: "run")
        let text = try String(contentsOf: fixture.root.appendingPathComponent("run/metrics.jsonl"), encoding: .utf8)
        let records = text.split(separator: "\n").filter { $0.contains("\"checkpoint_s\"") }
        XCTAssertEqual(records.count, 6)
        XCTAssertEqual(records.filter { $0.contains("\"in_memory\": 1") }.count, 3)
        for record in records {
            XCTAssertNotNil(record.firstMatch(of: /^\{"step": \d+, "checkpoint_s": [^,]+, "checkpoint_write_s": [^,]+, "checkpoint_bytes": \d+/), "\(record)")
        }
    }

    /// The log writes floats so that their text parses back to the same bits, whatever the value.
    func testMetricsLogRoundTripsFloatsBitForBit() throws {
        let fixture = try TrainFixture()
        let url = fixture.root.appendingPathComponent("metrics.jsonl")
        let log = try MetricsLog(url: url, keepingThrough: nil)
        var random = RandomStream(seed: 5)
        // Values whose shortest round-trip text needs all 9 digits, subnormals, extremes, and random bit patterns.
        var floats: [Float] = [0.1, 1 / 3, 16_777_215, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
                               -0.0, 3.4028235e38, 1.00000012, 8.589973e9]
        floats += (0..<500).map { _ in Float(bitPattern: UInt32(random.nextInt(below: 0x7F80_0000))) }
        let doubles: [Double] = [0.1, 1 / 3, .leastNonzeroMagnitude, 2.5e-308, 123_456_789.123_456_78]
        for (index, value) in floats.enumerated() {
            try log.write(["step": .int(index), "loss": .float(value), "lr": .double(doubles[index % doubles.count])])
        }
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, floats.count)
        for (index, line) in lines.enumerated() {
            XCTAssertEqual(MetricsText.float("loss", in: line)?.bitPattern, floats[index].bitPattern, String(line))
            XCTAssertEqual(MetricsText.double("lr", in: line)?.bitPattern, doubles[index % doubles.count].bitPattern, String(line))
        }
    }

    /// A resume keeps the records of steps up to its checkpoint, in the file's order (a snapshot's record may follow a
    /// later step's), whatever the order of their fields, and drops later steps, a line cut off, and lines that are not
    /// records; it reads the file a line at a time, through lines longer than its buffer.
    func testAResumeKeepsTheRecordsUpToItsStep() throws {
        let fixture = try TrainFixture()
        let url = fixture.root.appendingPathComponent("metrics.jsonl")
        let long = "{\"step\": 2, \"bubble_per_stage\": [" + Array(repeating: "0.5", count: 400_000).joined(separator: ", ") + "]}"
        let lines = [
            #"{"step": 0, "val_loss": 5.5}"#, #"{"step": 1, "loss": 5.4, "lr": 0.001}"#, long, #"{"loss": 5.2, "step": 3}"#,
            #"{"step": 4, "loss": 5.1}"#, #"{"step": 3, "checkpoint_s": 0.1, "in_memory": 1}"#, #"{"step": 12x, "loss": 1}"#,
            "not a record", #"{"step": 5, "loss": 5.0}"#, #"{"step": 3, "loss": 4."#,
        ]
        try Data(lines.joined(separator: "\n").utf8).write(to: url)
        let log = try MetricsLog(url: url, keepingThrough: 3)
        try log.write(["step": .int(4), "loss": .float(4.5)])
        let kept = try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(kept.map(String.init), [lines[0], lines[1], long, lines[3], lines[5], #"{"step": 4, "loss": 4.5}"#, ""])
    }

    func testLearningRateSchedule() {
        let schedule = LearningRateSchedule(peak: 1, minimum: 0.1, warmupSteps: 10, totalSteps: 110)
        XCTAssertEqual(schedule.rate(at: 1), 0.1, accuracy: 1e-12)
        XCTAssertEqual(schedule.rate(at: 10), 1, accuracy: 1e-12)
        XCTAssertEqual(schedule.rate(at: 60), 0.55, accuracy: 1e-12)
        XCTAssertEqual(schedule.rate(at: 110), 0.1, accuracy: 1e-12)
    }
}

/// Reads a number of a metrics line from its text, not through a JSON parser's Double.
enum MetricsText {
    static func text(_ key: String, in line: Substring) -> Substring? {
        guard let range = line.range(of: "\"\(key)\": ") else { return nil }
        return line[range.upperBound...].prefix { $0 != "," && $0 != "}" }
    }

    static func float(_ key: String, in line: Substring) -> Float? { text(key, in: line).flatMap { Float($0) } }
    static func double(_ key: String, in line: Substring) -> Double? { text(key, in: line).flatMap { Double($0) } }
}

extension Transformer {
    func forward(inputs: [Int32], targets: [Int32], batch: Int, length: Int, lossScale: Float) -> Float {
        inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length, lossScale: lossScale)
            }
        }
    }
}
