import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData

/// `keel sft`: supervised fine-tuning of a run on chat data — `keel train` with `data.chat`, the run's own
/// tokenizer and model shape, and its weights to start from.
struct SFT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Fine-tune a run on conversations (supervised fine-tuning).",
        discussion: """
            --data: JSONL files of {"messages": [{"role", "content"}, …]} or {"prompt", "completion"} lines (as TRL \
            takes them). Each conversation is rendered by the chat template kept beside the run's tokenizer (an \
            import's), or in ChatML; the loss counts only what the assistant writes (a completion, after its prompt); \
            conversations are packed into windows of training.seq_len + 1 tokens without attending to each other. \
            The model's shape and tokenizer are --init-from's (a BPE tokenizer without ChatML's markers gets them as \
            special tokens, with embedding rows, in DIR/base); training settings come from --config (its [model] \
            must be the run's) or the defaults, and --set. Everything else is `keel train`: checkpoints, --resume, \
            parallel layouts.
            """)

    @Option(help: ArgumentHelp("The run or checkpoint to start from (its weights, shape and tokenizer).", valueName: "dir"))
    var initFrom: String?

    @Option(help: ArgumentHelp("Chat data (repeat for several files).", valueName: "file.jsonl"))
    var data: [String] = []

    @Option(name: .shortAndLong, help: "Run directory to write.")
    var out: String

    @Option(name: .shortAndLong, help: "TOML config for the training settings (default: the run's [model] and Keel's defaults).")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key.", valueName: "section.key=value"))
    var overrides: [String] = []

    @Flag(help: "Continue the run in --out from its newest valid checkpoint, with the config it saved.")
    var resume = false

    func validate() throws {
        guard !resume else { return }
        if initFrom == nil { throw ValidationError("give the run to fine-tune with --init-from DIR") }
        if data.isEmpty { throw ValidationError("give the chat data with --data FILE.jsonl") }
    }

    func run() throws {
        guard let initFrom, !resume else {
            try Train.parse(["--out", out, "--resume"] + overrides.flatMap { ["--set", $0] }).run()
            return
        }
        var checkpoint = try CheckpointReader(resolving: initFrom)
        // The tokenizer file the checkpoint's state names (a run on tiktoken's file keeps its name, cl100k_base.tiktoken).
        var tokenizerName = checkpoint.tokenizerPath
        var start = initFrom
        // Keel's ChatML on a BPE tokenizer without its markers: they become tokens of their own first.
        if tokenizerName != "byte", TokenizerSettings(besides: tokenizerName).chatTemplate == nil {
            let loaded = try loadTokenizer(tokenizerName)
            let missing = ChatVocabulary.missingMarkers(in: loaded)
            let tokenizer = URL(fileURLWithPath: tokenizerName)
            if !missing.isEmpty {
                guard tokenizer.pathExtension == "json" else {
                    throw KeelError("sft: \(tokenizerName) has no chat template and lacks ChatML's \(missing.joined(separator: " and ")); Keel adds them as special tokens to a tokenizer.json only: give the run a chat template (tokenizer_config.json beside the tokenizer) or use a tokenizer.json")
                }
                let base = URL(fileURLWithPath: out).appendingPathComponent("base")
                checkpoint = try ChatVocabulary.base(at: base, extending: checkpoint, tokenizerFile: tokenizer, tokenizer: loaded,
                                                     missing: missing)
                start = base.path
                tokenizerName = checkpoint.tokenizerPath
            }
        }
        let arguments = ["--out", out, "--init-from", start]
        let configPath: String
        if let config {
            configPath = config
        } else {
            // The run's [model] section, from the config.toml of its run directory.
            let run = checkpoint.directory.deletingLastPathComponent().deletingLastPathComponent()
            let saved = run.appendingPathComponent("config.toml")
            guard let text = try? String(contentsOf: saved, encoding: .utf8) else {
                throw KeelError("\(initFrom): no config.toml beside its checkpoints to take the model's shape from; give --config with its [model]")
            }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-sft-\(UUID())")
            configPath = try Self.modelOnlyConfig(text, into: directory)
        }
        defer { if config == nil { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: configPath).deletingLastPathComponent().path) } }
        let quoted = { (path: String) in "\"" + path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        // The checkpoint's own vocabulary size: a config that leaves it to the tokenizer would pad it otherwise under
        // tensor parallelism.
        var sets = ["model.vocab_size=\(checkpoint.model.vocabSize)"] + overrides
        sets.append("data.chat=[" + data.map(quoted).joined(separator: ", ") + "]")
        sets.append("data.tokenizer=" + quoted(tokenizerName))
        try Train.parse(["--config", configPath] + arguments + sets.flatMap { ["--set", $0] }).run()
    }

    /// A config holding only the [model] section of `text`, written as `sft-model.toml` into `directory` (created);
    /// returns its path.
    static func modelOnlyConfig(_ text: String, into directory: URL) throws -> String {
        var lines: [Substring] = [], inModel = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("[") { inModel = trimmed == "[model]" }
            if inModel { lines.append(line) }
        }
        guard !lines.isEmpty else { throw KeelError("the run's config.toml has no [model] section") }
        try AtomicFile.createDirectory(directory)
        let url = directory.appendingPathComponent("sft-model.toml")
        try AtomicFile.write(Data(lines.joined(separator: "\n").utf8), to: url)
        return url.path
    }
}
