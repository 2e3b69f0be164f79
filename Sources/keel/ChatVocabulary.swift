import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelModel

/// ChatML's markers added to a run whose tokenizer lacks them, before supervised fine-tuning in Keel's ChatML:
/// `<|im_start|>` and `<|im_end|>` become special tokens of its `tokenizer.json` (ids after its last), and the
/// model's token table (and an untied output head) gains their rows — within its padding when the vocabulary has
/// room, else by growing it — each starting at the mean of the tokenizer's rows, as embeddings of new tokens
/// usually start. The result is a checkpoint of step 0 (`WeightsCheckpoint`) that fine-tuning starts from.
enum ChatVocabulary {
    static let markers = [ChatFormat.start, ChatFormat.end]

    /// The extended checkpoint in run directory `base`: made by the first process (rank 0 of an `mpirun` job; the
    /// others wait for it to be published), or reused when an earlier attempt made it from the same checkpoint
    /// (`sourceFile` names it) and it has the markers. One an attempt made from another checkpoint (`--init-from`
    /// corrected after a failure) is made again: reused, the run would train the other model's weights.
    static func base(at base: URL, extending checkpoint: CheckpointReader, tokenizerFile: URL, tokenizer: any TextTokenizer,
                     missing: [String]) throws -> CheckpointReader {
        let source = base.appendingPathComponent(sourceFile), identity = checkpoint.identity
        func ready() -> CheckpointReader? {
            guard (try? String(contentsOf: source, encoding: .utf8)) == identity,
                  let reader = try? CheckpointReader(resolving: base.path),
                  let extended = try? loadTokenizer(reader.directory.appendingPathComponent("tokenizer.json").path),
                  missingMarkers(in: extended).isEmpty else { return nil }
            return reader
        }
        if let reader = ready() { return reader }
        let placement = try ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        if placement.rank == 0 {
            if FileManager.default.fileExists(atPath: base.path) { try FileManager.default.removeItem(at: base) }
            let line = try extend(checkpoint, tokenizerFile: tokenizerFile, tokenizer: tokenizer, missing: missing, into: base)
            // Last: what the others wait for, and what tells a later attempt where the base came from.
            try AtomicFile.write(Data(identity.utf8), to: source)
            StandardStreams.error(line + "\n")
            return try CheckpointReader(resolving: base.path)
        }
        for _ in 0..<3000 {  // up to 10 minutes
            if let reader = ready() { return reader }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw KeelError("rank \(placement.rank): \(base.path) was not published by rank 0 in 10 minutes")
    }

    /// The file in the base run directory that names the checkpoint it extends (`CheckpointReader.identity`).
    static let sourceFile = "extends.txt"

    /// The markers `tokenizer` lacks as special tokens.
    static func missingMarkers(in tokenizer: any TextTokenizer) -> [String] {
        markers.filter { tokenizer.specialToken($0) == nil }
    }

    /// Writes into run directory `base` the checkpoint's model and tokenizer with `missing` added; returns a line for
    /// the log.
    static func extend(_ checkpoint: CheckpointReader, tokenizerFile: URL, tokenizer: any TextTokenizer, missing: [String],
                       into base: URL) throws -> String {
        // The tokenizer.json with the markers as added special tokens.
        guard var root = try JSONSerialization.jsonObject(with: Data(contentsOf: tokenizerFile)) as? [String: Any] else {
            throw KeelError("\(tokenizerFile.path) is not a tokenizer.json object")
        }
        let first = tokenizer.vocabSize
        var added = root["added_tokens"] as? [[String: Any]] ?? []
        for (offset, marker) in missing.enumerated() {
            added.append(["id": first + offset, "content": marker, "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": true])
        }
        root["added_tokens"] = added
        let tokenizerData = try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])

        // The model, its vocabulary rows grown when the new ids do not fit.
        let old = try checkpoint.loadModel()
        var config = old.config
        // Grown to a multiple of 64 when it must grow, so that tensor-parallel sizes still divide it.
        if first + missing.count > config.vocabSize { config.vocabSize = (first + missing.count + 63) / 64 * 64 }
        let model = try Transformer(config: config, seed: 0)
        for entry in old.table.entries {
            guard let target = model.table.entries.first(where: { $0.name == entry.name }) else {
                throw KeelError("the grown model has no tensor \(entry.name)")
            }
            let source = old.parameters.pointer + entry.offset, destination = model.parameters.pointer + target.offset
            guard entry.slot == .tokenTable || entry.slot == .output else {
                destination.update(from: source, count: entry.count)
                continue
            }
            // Rows of the vocabulary: the old ones, then the new markers' at the mean of the tokenizer's rows.
            let width = entry.count / old.config.vocabSize
            destination.update(from: source, count: entry.count)
            var mean = [Double](repeating: 0, count: width)
            for row in 0..<first { for k in 0..<width { mean[k] += Double(source[row * width + k]) / Double(first) } }
            for row in first..<(first + missing.count) {
                for k in 0..<width { destination[row * width + k] = Float(mean[k]) }
            }
        }
        try WeightsCheckpoint.write(
            model, tokenizer: ("tokenizer.json", { try AtomicFile.write(tokenizerData, to: $0) }),
            config: "# \(checkpoint.directory.path) with ChatML's markers added to its vocabulary by `keel sft`.\n\n"
                + WeightsCheckpoint.modelSection(config),
            to: base)
        let ids = (first..<(first + missing.count)).map(String.init).joined(separator: ", ")
        return "sft: added \(missing.joined(separator: " and ")) to the vocabulary (ids \(ids)"
            + (config.vocabSize > old.config.vocabSize ? "; vocabulary \(old.config.vocabSize) → \(config.vocabSize)" : "")
            + "), their embeddings starting at the mean of the others'"
    }
}
