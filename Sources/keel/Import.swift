import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelModel

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a model trained elsewhere into a Keel run (a checkpoint of step 0).",
        discussion: """
            The run directory then works wherever a Keel run does: generate, serve, eval, sample, export, and \
            fine-tuning with `keel train --init-from RUN`.
            """,
        subcommands: [HuggingFace.self, GGUF.self])

    struct HuggingFace: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hf",
            abstract: "Import a Hugging Face transformers directory of a GPT-2 or Llama model.",
            discussion: """
                DIR holds config.json, the weights (model.safetensors, or shards listed by \
                model.safetensors.index.json; F32, F16, BF16, F64) and the tokenizer (tokenizer.json, or GPT-2's \
                vocab.json and merges.txt; or give --tokenizer). tokenizer_config.json, special_tokens_map.json and \
                chat_template.jinja (from beside the --tokenizer file when it has them, else DIR's) and DIR's \
                generation_config.json are kept beside the tokenizer.
                """)

        @Argument(help: "The model directory.")
        var directory: String

        @Option(name: .shortAndLong, help: "Run directory to create.")
        var out: String

        @Option(help: "Tokenizer file (tokenizer.json) when DIR has none.")
        var tokenizer: String?

        func run() throws {
            let root = URL(fileURLWithPath: directory)
            let configURL = root.appendingPathComponent("config.json")
            guard let data = try? Data(contentsOf: configURL) else { throw KeelError("\(configURL.path): no such file") }
            guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw KeelError("\(configURL.path): not a JSON object")
            }
            let config = try HuggingFaceImport.config(json, path: configURL.path)
            // The tokenizer: --tokenizer, DIR/tokenizer.json (kept as it is), or vocab.json + merges.txt (converted).
            let file = tokenizer.map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent("tokenizer.json")
            let vocabulary: BPEVocabulary, write: (URL) throws -> Void
            if tokenizer != nil || FileManager.default.fileExists(atPath: file.path) {
                vocabulary = try TokenizerFiles.load(file.path)
                let bytes = try Data(contentsOf: file)
                write = { try AtomicFile.write(bytes, to: $0) }
            } else if FileManager.default.fileExists(atPath: root.appendingPathComponent("vocab.json").path) {
                vocabulary = try TokenizerFiles.loadVocabularyAndMerges(vocabulary: root.appendingPathComponent("vocab.json"),
                                                                       merges: root.appendingPathComponent("merges.txt"))
                write = { try TokenizerFiles.writeHuggingFace(vocabulary, to: $0) }
            } else {
                throw KeelError("\(directory): no tokenizer.json (or vocab.json and merges.txt); give one with --tokenizer")
            }
            let textTokenizer = try BPETokenizer(vocabulary: vocabulary, origin: file.path,
                                                 endOfSequence: TokenizerSettings(besides: file.path).endOfSequence)
            guard vocabulary.size <= config.vocabSize else {
                throw KeelError("the tokenizer has \(vocabulary.size) ids, more than the model's vocab_size \(config.vocabSize)")
            }
            let model = try HuggingFaceImport.model(directory: root, config: config)
            // What generation reads beside the tokenizer: its special tokens and chat template — those beside the tokenizer
            // file (with --tokenizer, its own, as its end of sequence above was read from them), else DIR's — and DIR's
            // generation settings (else the tokenizer's neighbour's).
            var extras: [String: Data] = [:]
            let tokenizerDirectory = file.deletingLastPathComponent()
            for (name, first, second) in [("tokenizer_config.json", tokenizerDirectory, root), ("special_tokens_map.json", tokenizerDirectory, root),
                                          ("chat_template.jinja", tokenizerDirectory, root), ("generation_config.json", root, tokenizerDirectory)] {
                let found = (try? Data(contentsOf: first.appendingPathComponent(name))) ?? (try? Data(contentsOf: second.appendingPathComponent(name)))
                if let found { extras[name] = found }
            }
            let checkpoint = try WeightsCheckpoint.write(
                model, tokenizer: ("tokenizer.json", write), extras: extras,
                config: "# Imported by `keel import hf` from \(root.standardizedFileURL.path).\n"
                    + "# Fine-tune it with `keel train --init-from RUN`, with this [model] section in the config.\n\n"
                    + WeightsCheckpoint.modelSection(config),
                to: URL(fileURLWithPath: out))
            print("""
                imported \(directory): \(describe(config)); \(model.table.count) parameters
                tokenizer: byte-level BPE (\(vocabulary.pattern.rawValue) pattern), \(textTokenizer.vocabSize) ids, end of text \(textTokenizer.endOfText)
                wrote \(checkpoint.path)
                """)
        }
    }

    struct GGUF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gguf",
            abstract: "Import a llama.cpp GGUF file of a Llama-family or GPT-2 model.",
            discussion: """
                Tensors in F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K or Q6_K are dequantized to fp32, the q/k rows that \
                llama.cpp's converter permuted are put back (GPT-2's transposed weights too), a Llama file without \
                output.weight ties the head to the token embedding, and the GGUF tokenizer (byte-level BPE) becomes the checkpoint's tokenizer.json, with \
                its end-of-sequence token and chat template in tokenizer_config.json.
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
            let tokenizer = try description.textTokenizer()
            let model = try GGUFImport.model(of: gguf, config: description.config, path: file)
            let config = """
                # Imported by `keel import gguf` from \(url.lastPathComponent)\(description.name.map { " (\($0))" } ?? "").
                # Fine-tune it with `keel train --init-from RUN`, with this [model] section in the config.

                """ + WeightsCheckpoint.modelSection(description.config)
            let bpe = (tokenizer as? BPETokenizer)?.vocabulary
            // Generation's settings as Hugging Face keeps them: the end-of-sequence token and the chat template.
            var settings: [String: Any] = [:]
            settings["eos_token"] = description.spelling(of: description.endOfSequence)
            settings["bos_token"] = description.spelling(of: description.beginningOfText)
            settings["chat_template"] = description.chatTemplate
            let extras = bpe == nil || settings.isEmpty ? [:]
                : ["tokenizer_config.json": try JSONSerialization.data(withJSONObject: settings, options: [.prettyPrinted, .sortedKeys])]
            let checkpoint = try WeightsCheckpoint.write(
                model, tokenizer: bpe.map { bpe in
                    // Texts start with BOS as llama.cpp puts it there, and as Hugging Face's tokenizer(text) does from this file.
                    ("tokenizer.json", { try TokenizerFiles.writeHuggingFace(bpe, textStart: description.spelling(of: description.textStart), to: $0) })
                },
                extras: extras, config: config, to: URL(fileURLWithPath: out))
            let types = description.tensorTypes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            print("""
                imported \(file): \(describe(description.config)); \(model.table.count) parameters
                tensors dequantized from \(types)
                tokenizer: \(bpe == nil ? "byte-level (Keel's)" : "byte-level BPE, pre-tokenizer \(lists.preTokenizer)"), \
                \(tokenizer.vocabSize) ids, end of text \(tokenizer.endOfText)
                wrote \(checkpoint.path)
                """)
            if let bos = description.textStart {
                print("note: texts start with BOS token \(bos) (generate and serve put it before prompts, and training and eval before documents; eval --llama-cpp-scoring also puts it first in each window, as llama-perplexity does)")
            }
        }
    }
}

/// A model's shape in one line, as `keel import` reports it.
private func describe(_ c: ModelConfig) -> String {
    "\(c.architecture == .llama ? "Llama" : "GPT-2"), \(c.layers) layers, d_model \(c.width), \(c.heads) heads (\(c.kvHeads) kv), "
        + "d_ff \(c.hiddenWidth), vocab \(c.vocabSize), context \(c.maxLength), "
        + (c.tiedEmbeddings ? "head tied to the embedding" : "own output head")
}
