import ArgumentParser
import KeelCheckpoint
import KeelData
import KeelTrain

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a checkpoint.")

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
    var checkpoint: String

    @Option(help: "Text to continue (default: a line break).")
    var prompt: String?

    @Option(help: "Number of tokens to generate.")
    var tokens = 200

    @Option(help: "Softmax temperature; 0 is greedy.")
    var temperature = 0.8

    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0: all).")
    var topK = 40

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    func validate() throws {
        guard (0...TrainConfig.mostSampledTokens).contains(tokens) else {
            throw ValidationError("--tokens must be from 0 to \(TrainConfig.mostSampledTokens)")
        }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be a number that is not negative") }
        guard topK >= 0 else { throw ValidationError("--top-k must not be negative") }
    }

    func run() throws {
        let reader = try CheckpointReader(resolving: checkpoint)
        let model = try reader.loadModel(), tokenizer = try loadCheckpointTokenizer(reader)
        print(try Sampling.generate(model: model, tokenizer: tokenizer,
                                    textStart: TokenizerSettings(directory: reader.directory).beginningOfTextToken(in: tokenizer),
                                    prompt: prompt ?? "\n", tokens: tokens, temperature: temperature, topK: topK, seed: seed))
    }
}
