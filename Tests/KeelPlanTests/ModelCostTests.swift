import KeelModel
import KeelPlan
import XCTest

/// The planner's counts against figures published or computed by hand, independently of the planner.
final class ModelCostTests: XCTestCase {
    /// Hugging Face's parameter counts: Meta-Llama-3-8B has 8,030,261,248; GPT-2 124,439,808.
    func testParameterCountsMatchPublishedModels() throws {
        XCTAssertEqual(ModelCost(try ModelPresets.named("llama3-8b")).parameters, 8_030_261_248)
        XCTAssertEqual(ModelCost(try ModelPresets.named("gpt2-124m")).parameters, 124_439_808)
    }

    /// Narayanan et al. eq. 3: a step of B sequences costs 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) FLOPs with
    /// full recomputation; without it, three quarters of the blocks' share.
    func testFLOPsFollowMegatronsFormula() {
        let (l, h, s, v, b) = (128.0, 25_600.0, 2048.0, 51_200.0, 3072.0)
        let model = ModelConfig(architecture: .gpt2, vocabSize: Int(v), layers: Int(l), heads: 160, width: Int(h), maxLength: 2048)
        let cost = ModelCost(model)
        let megatron = 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))
        XCTAssertEqual(b * s * cost.hardwareFLOPsPerToken(sequence: Int(s), recomputedShare: 1), megatron, accuracy: megatron * 1e-12)
        let withoutRecompute = 72 * b * s * l * h * h * (1 + s / (6 * h)) + 6 * b * s * h * v
        XCTAssertEqual(b * s * cost.trainingFLOPsPerToken(sequence: Int(s)), withoutRecompute, accuracy: withoutRecompute * 1e-12)
    }

    /// Korthikanti et al. 2022, Table 2, per layer per token in bytes: sbh(34 + 5as/h) with no parallelism,
    /// sbh(10 + 24/t + 5as/(ht)) with tensor parallelism, sbh(34/t + 5as/(ht)) with sequence parallelism too,
    /// 2sbh with full recomputation.
    func testActivationBytesFollowKorthikanti() {
        let (a, h, s, t) = (64.0, 8192.0, 2048.0, 8.0)
        let cost = ModelCost(ModelConfig(architecture: .gpt2, vocabSize: 51_200, layers: 48, heads: Int(a), width: Int(h), maxLength: 2048))
        func bytes(_ tensor: Int, _ sp: Bool) -> Double {
            cost.activationBytesPerLayer(sequence: Int(s), tensor: tensor, sequenceParallel: sp, attention: .materialized)
        }
        XCTAssertEqual(bytes(1, false), h * (34 + 5 * a * s / h), accuracy: 1e-6)
        XCTAssertEqual(bytes(8, false), h * (10 + 24 / t + 5 * a * s / (h * t)), accuracy: 1e-6)
        XCTAssertEqual(bytes(8, true), h * (34 / t + 5 * a * s / (h * t)), accuracy: 1e-6)
        XCTAssertEqual(cost.recomputedActivationBytesPerLayer(tensor: 8, sequenceParallel: false), 2 * h)
        // FlashAttention keeps one fp32 log-sum-exp per head instead of the 5as scores.
        XCTAssertEqual(cost.activationBytesPerLayer(sequence: Int(s), tensor: 1, sequenceParallel: false, attention: .flash),
                       34 * h + 4 * a, accuracy: 1e-6)
    }

    /// Llama's layer by hand: norms' inputs and products' inputs 8h, Q 2h, K and V 2·2·kv, attention output
    /// 2h, gate and up 2·2·d_ff, SwiGLU's output 2·d_ff.
    func testLlamaActivationBytesByHand() throws {
        let model = try ModelPresets.named("llama3-70b")   // h 8192, kv 8 × 128, d_ff 28,672, 64 heads
        let cost = ModelCost(model)
        let replicated: Double = 8 * 8192
        let attention: Double = 2 * 8192 + 4 * 1024 + 2 * 8192 + 4 * 64
        let mlp: Double = 4 * 28_672 + 2 * 28_672
        let expected = replicated + attention + mlp
        XCTAssertEqual(cost.activationBytesPerLayer(sequence: 8192, tensor: 1, sequenceParallel: false, attention: .flash), expected)
    }
}
