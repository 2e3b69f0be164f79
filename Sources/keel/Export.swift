import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelTrain

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint to other formats.", subcommands: [HuggingFace.self, GGUF.self])

    struct HuggingFace: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf",
            abstract: "Write config.json, model.safetensors and the tokenizer for Hugging Face transformers.",
            discussion: """
                The directory loads with transformers.AutoModelForCausalLM.from_pretrained(DIR) and \
                AutoTokenizer.from_pretrained(DIR) (tokenizer.json, tokenizer_config.json, and the chat template and \
                special tokens map the checkpoint keeps; a .tiktoken tokenizer is not written). DIR must be new, \
                empty, or an earlier export (a README.md and hidden files may stay).
                """)

        @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
        var checkpoint: String

        @Option(name: .shortAndLong, help: "Directory to write.")
        var out: String

        func run() throws {
            let reader = try CheckpointReader(resolving: checkpoint)
            let names = try Self.write(reader, to: URL(fileURLWithPath: out))
            print("wrote \(names.map { "\(out)/\($0)" }.joined(separator: ", "))")
        }

        /// Writes `reader`'s model into `directory` for transformers, its config naming the model's end of sequence
        /// (`tokenizer_config.json`'s `eos_token`, an imported instruct model's `<|im_end|>`; else end-of-text) and
        /// the token its texts start with, when it has one, and its tokenizer files; returns the names written.
        /// A directory that holds other files than an export's is refused; an earlier export's files that this one
        /// does not write (another tokenizer's settings) are removed, so none is read with the new model.
        @discardableResult
        static func write(_ reader: CheckpointReader, to directory: URL) throws -> [String] {
            let owned = Set(HuggingFaceExport.fileNames + HuggingFaceTokenizer.fileNames)
            if let existing = try? FileManager.default.contentsOfDirectory(atPath: directory.path) {
                // A model card and a Hub clone's git files may stay; weights, tokenizers and runs of others may not.
                let foreign = existing.filter { !owned.contains($0) && !$0.hasPrefix(".") && $0 != "README.md" }.sorted()
                guard foreign.isEmpty else {
                    throw KeelError("\(directory.path) holds files an export does not write (\(foreign.prefix(4).joined(separator: ", "))\(foreign.count > 4 ? ", …" : "")), which would be read with the exported model; choose a new or empty --out, or an earlier export's directory")
                }
            }
            let model = try reader.loadModel(), tokenizer = try loadCheckpointTokenizer(reader)
            let settings = TokenizerSettings(directory: reader.directory)
            let endOfSequence = settings.endOfSequence.flatMap { tokenizer.specialToken($0) } ?? tokenizer.endOfText
            let beginningOfText = settings.beginningOfTextToken(in: tokenizer)
            let files = try HuggingFaceTokenizer.files(for: tokenizer, at: reader.tokenizerPath, endOfSequence: endOfSequence,
                                                       beginningOfText: beginningOfText, contextLength: model.config.maxLength)
            if files == nil {
                StandardStreams.error("note: the tokenizer, \(reader.tokenizerPath), is a tiktoken file, which has no tokenizer.json form: the export holds the model only; read its text with that file\n")
            }
            let written = HuggingFaceExport.fileNames + (files ?? []).map(\.name)
            try HuggingFaceExport.write(model, to: directory, endOfText: Int(endOfSequence), beginningOfText: beginningOfText.map(Int.init),
                                        besides: files ?? [], removing: owned.subtracting(written).sorted())
            return written
        }
    }

    struct GGUF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gguf",
            abstract: "Write a Llama or GPT-2 checkpoint as a GGUF file for llama.cpp.",
            discussion: """
                The projections and embeddings in --type (f32, f16, q8_0, q4_0, q4_1, q5_0, q4_k: quantized as ggml's \
                reference quantizer does; beside a 4-bit type the output head in q8_0), the norms, biases and GPT-2's \
                position table in f32, the tokenizer as llama.cpp's byte-level BPE; laid out as \
                llama.cpp's converter lays them out (Llama's q/k rows permuted, GPT-2's Conv1D weights transposed and \
                its tied head written out).
                """)

        @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
        var checkpoint: String

        @Option(help: "Tensor type: f32, f16, q8_0, q4_0, q4_1, q5_0 or q4_k.")
        var type = "f32"

        @Option(name: .shortAndLong, help: "GGUF file to write.")
        var out: String

        func validate() throws {
            guard GGUFExport.WeightType(rawValue: type.lowercased()) != nil else {
                throw ValidationError("--type must be one of \(GGUFExport.WeightType.allCases.map(\.rawValue).joined(separator: ", ")) (got \(type))")
            }
        }

        func run() throws {
            let file = try writeGGUF(checkpoint: checkpoint, type: GGUFExport.WeightType(rawValue: type.lowercased())!,
                                     to: URL(fileURLWithPath: out))
            print("wrote \(out): \(file.tensors.count) tensors, \(type.lowercased())")
        }
    }
}

/// Writes the model of `checkpoint` (a run or checkpoint directory) as a GGUF file of `type` at `url`: the file
/// itself, for its description.
@discardableResult
func writeGGUF(checkpoint: String, type: GGUFExport.WeightType, to url: URL) throws -> GGUFFile {
    let reader = try CheckpointReader(resolving: checkpoint)
    let model = try reader.loadModel(), tokenizer = try loadCheckpointTokenizer(reader)
    let vocabulary = try GGUFVocabulary(tokenizer, size: model.config.vocabSize)
    if let difference = vocabulary.difference { StandardStreams.error("note: \(difference)\n") }
    // A model whose texts start with a token asks llama.cpp for it, as generate puts it before a checkpoint's prompts.
    let settings = TokenizerSettings(directory: reader.directory)
    let start = settings.beginningOfTextToken(in: tokenizer)
    let file = try GGUFExport.file(
        for: model, type: type,
        tokenizer: GGUFExport.Tokenizer(tokens: vocabulary.tokens, types: vocabulary.types.map(\.rawValue),
                                        merges: vocabulary.merges, preTokenizer: vocabulary.preTokenizer,
                                        endOfText: vocabulary.endOfText, textStart: start.map(Int.init),
                                        chatTemplate: settings.chatTemplate))
    try file.write(to: url)
    return file
}
