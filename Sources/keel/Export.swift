import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelData
import KeelTrain

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint to other formats.", subcommands: [HuggingFace.self])

    struct HuggingFace: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf",
            abstract: "Write config.json and model.safetensors for Hugging Face transformers.",
            discussion: "The directory loads with transformers.AutoModelForCausalLM.from_pretrained(DIR).")

        @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
        var checkpoint: String

        @Option(name: .shortAndLong, help: "Directory to write.")
        var out: String

        func run() throws {
            let (model, tokenizer) = try loadCheckpoint(checkpoint)
            try HuggingFaceExport.write(model, to: URL(fileURLWithPath: out), endOfText: Int(tokenizer.endOfText))
            print("wrote \(out)/config.json and \(out)/model.safetensors")
        }
    }
}
