import KeelCore
import KeelModel
import XCTest

/// A model cut into pipeline stages, run stage by stage in one process (activations handed forward, their
/// gradients handed back), is the whole model: same initial tensors, same loss, same gradients.
final class StageTests: XCTestCase {
    func testStagesComposeToTheWholeModel() throws {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama, ModelFixtures.tiedLlama].map({ base -> ModelConfig in
            var config = base
            config.layers = 4
            return config
        }) {
            for cuts in [[0, 2, 4], [0, 1, 3, 4], [0, 1, 2, 3, 4]] {
                try compare(config, cuts: cuts)
            }
        }
    }

    /// A backward pass split into its input half and, later, its weight half (zero-bubble schedules) adds the
    /// same gradients, bit for bit, as the whole backward pass — on the whole model and on two stages, with two
    /// micro-batches in flight in different slots.
    func testSplitBackwardEqualsTheWholeBackward() throws {
        for base in [ModelFixtures.gpt2, ModelFixtures.llama] {
            var config = base
            config.layers = 4
            let batch = 2, length = 8
            let micro = (0..<2).map { ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 20 + UInt64($0)) }
            for layers in [[0..<4], [0..<2, 2..<4]] {
                var runs: [[[Float]]] = []
                for split in [false, true] {
                    let stages = try layers.map { try Transformer(config: config, seed: 3, layers: $0) }
                    for (slot, tokens) in micro.enumerated() {
                        tokens.inputs.withUnsafeBufferPointer { i in
                            tokens.targets.withUnsafeBufferPointer { t in
                                _ = stages[0].forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length,
                                                      lossScale: 0.5, slot: slot)
                                for s in 1..<stages.count {
                                    _ = stages[s].forward(activations: stages[s - 1].output(slot: slot), targets: t.baseAddress!,
                                                          batch: batch, length: length, lossScale: 0.5, slot: slot)
                                }
                            }
                        }
                    }
                    for slot in 0..<micro.count {
                        for s in stride(from: stages.count - 1, through: 0, by: -1) {
                            let gradient = s == stages.count - 1 ? nil : stages[s + 1].inputGradient(slot: slot)
                            if split {
                                stages[s].backwardInput(outputGradient: gradient, slot: slot)
                            } else if let gradient {
                                stages[s].backward(outputGradient: gradient, slot: slot)
                            } else {
                                stages[s].backward(slot: slot)
                            }
                        }
                    }
                    if split { for slot in 0..<micro.count { for stage in stages { stage.backwardWeight(slot: slot) } } }
                    runs.append(stages.map { $0.gradients.toArray() })
                }
                XCTAssertEqual(runs[0], runs[1], "\(config.architecture), \(layers.count) stage(s)")
                XCTAssertTrue(runs[0].allSatisfy { $0.contains { $0 != 0 } })
            }
        }
    }

    private func compare(_ config: ModelConfig, cuts: [Int]) throws {
        let batch = 2, length = 8
        let tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 4)
        let whole = try Transformer(config: config, seed: 11)
        let wholeLoss = ModelFixtures.lossAndGradients(whole, tokens.inputs, tokens.targets, batch: batch, length: length)
        let stages = try zip(cuts, cuts.dropFirst()).map { try Transformer(config: config, seed: 11, layers: $0..<$1) }
        let label = "\(config.architecture) cut at \(cuts)"
        XCTAssertTrue(stages.first!.isFirstStage && !stages.first!.isLastStage || stages.count == 1, label)
        XCTAssertTrue(stages.last!.isLastStage && !stages.last!.isFirstStage, label)

        // Every tensor of every stage starts equal to the whole model's tensor of that name; together the
        // stages hold every tensor (GPT-2's tied token table twice: the first stage's and the last one's copy).
        var seen = Set<String>()
        for stage in stages {
            stage.gradients.zero()
            for entry in stage.table.entries {
                let reference = try XCTUnwrap(whole.table[entry.name], "\(label): \(entry.name)")
                XCTAssertEqual(Array(UnsafeBufferPointer(start: stage.parameters.pointer + entry.offset, count: entry.count)),
                               Array(UnsafeBufferPointer(start: whole.parameters.pointer + reference.offset, count: entry.count)),
                               "\(label): \(entry.name)")
                seen.insert(entry.name)
            }
        }
        XCTAssertEqual(seen, Set(whole.table.entries.map(\.name)), label)

        // Forward stage by stage, then backward in reverse.
        var loss: Float = 0
        tokens.inputs.withUnsafeBufferPointer { i in
            tokens.targets.withUnsafeBufferPointer { t in
                _ = stages[0].forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length, lossScale: 1)
                for s in 1..<stages.count {
                    loss = stages[s].forward(activations: stages[s - 1].output(), targets: t.baseAddress!, batch: batch,
                                             length: length, lossScale: 1)
                }
            }
        }
        stages.last!.backward()
        for s in stride(from: stages.count - 2, through: 0, by: -1) {
            stages[s].backward(outputGradient: stages[s + 1].inputGradient())
        }
        XCTAssertEqual(loss, wholeLoss, label)

        let tiedName = config.tiedEmbeddings ? whole.table.entries.first { $0.slot == .tokenTable }!.name : ""
        let tiedCopies = stages.flatMap { stage in stage.table.entries.filter { $0.name == tiedName }.map { (stage, $0) } }
        for stage in stages {
            for entry in stage.table.entries where entry.name != tiedName {
                let reference = whole.table[entry.name]!
                XCTAssertEqual(Array(UnsafeBufferPointer(start: stage.gradients.pointer + entry.offset, count: entry.count)),
                               Array(UnsafeBufferPointer(start: whole.gradients.pointer + reference.offset, count: entry.count)),
                               "\(label): gradient of \(entry.name)")
            }
        }
        // The tied table's gradient is split between its two copies (embedding lookups on the first stage, the
        // output projection on the last); their sum is the whole model's, up to the order of the additions.
        if let reference = whole.table[tiedName] {
            XCTAssertEqual(tiedCopies.count, 2, label)
            for i in stride(from: 0, to: reference.count, by: 97) {
                let sum = tiedCopies.map { Double($0.0.gradients.pointer[$0.1.offset + i]) }.reduce(0, +)
                XCTAssertEqual(sum, Double(whole.gradients.pointer[reference.offset + i]), accuracy: 1e-6, "\(label): \(tiedName)[\(i)]")
            }
        }
    }
}
