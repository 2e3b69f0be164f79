import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelData
import KeelModel

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a model trained elsewhere into a Keel run (a checkpoint of step 0).",
        discussion: """
            The run directory then works wherever a Keel run does: generate, serve, eval, sample, export, and \
            fine-tuning with `keel train --init-from RUN`.
            """,
        subcommands: [GGUF.self])

    struct GGUF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gguf",
            abstract: "Import a llama.cpp GGUF file of a Llama-family model.",
            discussion: """
                Tensors in F32, F16, BF16, Q8_0, Q4_0, Q4_1 or Q4_K are dequantized to fp32, the q/k rows that \
                llama.cpp's converter permuted are put back, a file without output.weight ties the head to the \
                token embedding, and the GGUF tokenizer (byte-level BPE) becomes the checkpoint's tokenizer.json.
                """)

        @Argument(help: "The GGUF file.")
        var file: String

        @Option(name: .shortAndLong, help: "Run directory to create.")
        var out: String

        func run() throws {
            let url = URL(fileURLWithPath: file)
            let gguf = try GGUFFile(contentsOf: url)
            let description = try GGUFImport.describe(gguf, path: file)
            let lists = description.tokenizer
            let vocabulary = try GGUFVocabulary(tokens: lists.tokens, types: lists.types, merges: lists.merges,
                                                preTokenizer: lists.preTokenizer, endOfText: lists.endOfText)
            let tokenizer = try vocabulary.tokenizer()
            let model = try GGUFImport.model(of: gguf, config: description.config, path: file)
            let config = """
                # Imported by `keel import gguf` from \(url.lastPathComponent)\(description.name.map { " (\($0))" } ?? "").
                # Fine-tune it with `keel train --init-from RUN`, with this [model] section in the config.

                """ + ImportedCheckpoint.modelSection(description.config)
            let bpe = (tokenizer as? BPETokenizer)?.vocabulary
            let checkpoint = try ImportedCheckpoint.write(
                model, tokenizer: bpe.map { bpe in ("tokenizer.json", { try TokenizerFiles.writeHuggingFace(bpe, to: $0) }) },
                config: config, to: URL(fileURLWithPath: out))
            let c = description.config
            let types = description.tensorTypes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            print("""
                imported \(file): Llama, \(c.layers) layers, d_model \(c.width), \(c.heads) heads (\(c.kvHeads) kv), \
                d_ff \(c.hiddenWidth), vocab \(c.vocabSize), context \(c.maxLength), \
                \(c.tiedEmbeddings ? "head tied to the embedding" : "own output head"); \(model.table.count) parameters
                tensors dequantized from \(types)
                tokenizer: \(bpe == nil ? "byte-level (Keel's)" : "byte-level BPE, pre-tokenizer \(lists.preTokenizer)"), \
                \(tokenizer.vocabSize) ids, end of text \(tokenizer.endOfText)
                wrote \(checkpoint.path)
                """)
            if description.addsBeginningOfText, let bos = description.beginningOfText {
                print("note: the file asks for BOS token \(bos) before every text; Keel does not add it, so prepend its text to prompts")
            }
        }
    }
}
