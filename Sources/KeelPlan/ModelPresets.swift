import KeelCore
import KeelModel

/// Named model shapes for planning: Keel's own presets, the GPT-2 sizes, GPT-3 175B, Megatron-LM's 1T GPT and
/// the Llama 3 family, as their papers and Hugging Face configs give them.
public enum ModelPresets {
    /// Name → shape.
    public static let all: [(name: String, config: ModelConfig)] = {
        func gpt(_ layers: Int, _ heads: Int, _ width: Int, vocab: Int = 50_257, length: Int = 1024) -> ModelConfig {
            ModelConfig(architecture: .gpt2, vocabSize: vocab, layers: layers, heads: heads, width: width, maxLength: length)
        }
        func llama(_ layers: Int, _ heads: Int, _ kv: Int, _ width: Int, _ ffn: Int, vocab: Int = 128_256,
                   tied: Bool = false) -> ModelConfig {
            ModelConfig(architecture: .llama, vocabSize: vocab, layers: layers, heads: heads, kvHeads: kv, width: width,
                        hiddenWidth: ffn, maxLength: 8192, ropeTheta: 500_000, tiedEmbeddings: tied)
        }
        let keel = ModelConfig.presets.sorted { $0.value.width < $1.value.width }.map { name, shape in
            (name, gpt(shape.layers, shape.heads, shape.width, length: shape.maxLength))
        }
        return keel + [
            ("gpt2-medium", gpt(24, 16, 1024)),
            ("gpt2-large", gpt(36, 20, 1280)),
            ("gpt2-xl", gpt(48, 25, 1600)),
            ("gpt3-175b", gpt(96, 96, 12_288, length: 2048)),
            ("megatron-1t", gpt(128, 160, 25_600, vocab: 51_200, length: 2048)),
            ("llama3-1b", llama(16, 32, 8, 2048, 8192, tied: true)),
            ("llama3-8b", llama(32, 32, 8, 4096, 14_336)),
            ("llama3-70b", llama(80, 64, 8, 8192, 28_672)),
            ("llama3-405b", llama(126, 128, 8, 16_384, 53_248)),
        ]
    }()

    /// The preset called `name`, or an error listing them.
    public static func named(_ name: String) throws -> ModelConfig {
        guard let found = all.first(where: { $0.name == name }) else {
            throw KeelError("plan: unknown model preset '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
        }
        return found.config
    }
}
