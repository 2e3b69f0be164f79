import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelModel
import KeelData
import KeelKernels
import KeelInference
import KeelTrain

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and perplexity of a checkpoint on a dataset or on text files, without training.",
        discussion: """
            The data is cut into consecutive windows of --seq-len tokens (every token is predicted once, \
            from at most --seq-len tokens of context), as the training loop's validation pass does; the \
            result is the mean loss per predicted token and its exponential, the perplexity. Files are read \
            as data.paths reads them (text, JSONL with a "text" field, .gz/.zst) and encoded with the \
            checkpoint's tokenizer; a dataset must have been prepared with that tokenizer. A run trained with \
            data.document_masking is evaluated with its documents kept apart too, as its validation pass ran.
            """)

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint), checkpoint directory, or a llama.cpp .gguf file (run in its own formats).")
    var checkpoint: String

    @Option(help: "Prepared dataset directory (keel data prepare) to evaluate on.")
    var dataset: String?

    @Option(help: "The dataset's split: val or train.")
    var split = "val"

    @Argument(help: "Text, JSONL or compressed files or directories to evaluate on (instead of --dataset).")
    var files: [String] = []

    @Option(help: "Tokens per window (default: the model's max_seq_len).")
    var seqLen: Int?

    @Option(help: "Windows per forward pass.")
    var batchSize = 8

    @Option(help: "Evaluate only the first N windows (0: all).")
    var maxWindows = 0

    @Flag(inversion: .prefixedNo, help: "Keep documents apart in each window (attention within a document, positions from its start), as data.document_masking trains (default: as the run was trained).")
    var documentMasking: Bool?

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    @Flag(name: .customLong("llama-cpp-scoring"), help: "Score as llama.cpp's llama-perplexity does: in each window only the predictions from its middle to its next-to-last token (with --quantize, the quantized model's).")
    var llamaCppScoring = false

    @OptionGroup var attentionOption: AttentionOption

    @Option(help: "Compare the model with its projections in a llama.cpp format (f16, q8_0, q4_0, q4_1, q5_0, q4_k): both perplexities, the KL divergence of the quantized next-token distributions from fp32's, top-1 agreement.")
    var quantize: String?

    func validate() throws {
        guard (dataset == nil) != files.isEmpty else { throw ValidationError("give either --dataset DIR or files to evaluate on") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        guard maxWindows >= 0 else { throw ValidationError("--max-windows must not be negative") }
        if let seqLen, seqLen <= 0 { throw ValidationError("--seq-len must be positive") }
        // llama-perplexity scores positions seq-len/2 to seq-len − 2 of each window: none below 3.
        if llamaCppScoring, let seqLen, seqLen < 3 { throw ValidationError("--seq-len must be at least 3 with --llama-cpp-scoring (got \(seqLen))") }
        if let quantize, QuantizationFormat(rawValue: quantize.lowercased()) == nil {
            throw ValidationError("--quantize must be one of \(QuantizationFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got \(quantize))")
        }
    }

    func run() throws {
        let format = quantize.flatMap { QuantizationFormat(rawValue: $0.lowercased()) }
        if documentMasking == true, InferenceModel.isGGUF(checkpoint) || llamaCppScoring || format != nil {
            throw KeelError("eval: --document-masking applies to the plain evaluation of a run: a GGUF file, --llama-cpp-scoring and --quantize attend across documents, as llama-perplexity does")
        }
        if InferenceModel.isGGUF(checkpoint) {
            guard dataset == nil else { throw KeelError("eval: a GGUF file is evaluated on text files, not on a prepared --dataset") }
            // The file runs in its own formats: every prediction scored, or llama-perplexity's half of them.
            let loaded = try InferenceModel.load(checkpoint, quantize: format, attention: attentionOption.attention)
            let length = try windowLength(loaded.model.config)
            let windows = try Evaluation.windows(files: files, tokenizer: loaded.tokenizer, textStart: loaded.beginningOfText,
                                                 vocabSize: loaded.model.config.vocabSize, length: length)
            let count = try windowCount(windows, length: length, origin: loaded.origin)
            try score(loaded.decoder, label: loaded.decoder.quantization?.rawValue ?? "gguf", windows: windows, count: count,
                      length: length, beginningOfText: loaded.beginningOfText)
            return
        }
        let reader = try CheckpointReader(resolving: checkpoint)
        let model = try reader.loadModel(), tokenizer = try loadCheckpointTokenizer(reader)
        let length = try windowLength(model.config)
        let vocabulary = model.config.vocabSize
        let bos = TokenizerSettings(directory: reader.directory).beginningOfTextToken(in: tokenizer)
        let trainedMasked = Evaluation.trainedWithDocumentMasking(reader.state.config)
        let plain = !llamaCppScoring && format == nil
        if trainedMasked, !plain, documentMasking == nil {
            StandardStreams.error("eval: note: the run was trained with data.document_masking; --llama-cpp-scoring and --quantize attend across documents, as llama-perplexity does\n")
        }
        let masked = plain && (documentMasking ?? trainedMasked)
        let documentEnd = masked ? tokenizer.endOfText : nil
        let windows = try dataset.map {
            try Evaluation.windows(dataset: URL(fileURLWithPath: $0), split: split, checkpoint: reader, vocabSize: vocabulary,
                                   length: length, documentEnd: documentEnd)
        } ?? Evaluation.windows(files: files, tokenizer: tokenizer, textStart: bos, vocabSize: vocabulary, length: length,
                                documentEnd: documentEnd)
        let count = try windowCount(windows, length: length, origin: reader.directory.path)
        if llamaCppScoring, let format {
            // Both models on llama-perplexity's positions, as `llama-perplexity --kl-divergence` compares them.
            try compare(model, format: format, windows: windows, count: count, length: length, beginningOfText: dataset == nil ? bos : nil)
            return
        }
        if llamaCppScoring {
            let decoder = try Decoder(model: model)
            decoder.halfPrecisionAttention = attentionOption.attention == "f16"
            // A prepared dataset's windows are shards' tokens, not a text llama-perplexity would tokenize: as they are.
            try score(decoder, label: "f32", windows: windows, count: count, length: length, beginningOfText: dataset == nil ? bos : nil)
            return
        }
        if attentionOption.attention != nil {
            throw KeelError("--attention applies to a GGUF file or to --llama-cpp-scoring; the plain and --quantize evaluations run fp32 attention")
        }
        if let format {
            try compare(model, format: format, windows: windows, count: count, length: length, beginningOfText: nil)
            return
        }
        var reported = 0
        // No more windows per pass than there are: the batch's buffers are allocated whole.
        let sum = Evaluation.lossSum(of: model, on: windows, count: count, batch: min(batchSize, count)) { done in
            guard done * 10 / count > reported * 10 / count, done < count else { return }
            reported = done
            StandardStreams.error("eval: \(done)/\(count) windows\n")
        }
        let loss = Float(sum / Double(count))
        let perplexity = exp(Double(loss))
        if json {
            print("{\"loss\": \(loss), \"perplexity\": \(perplexity), \"windows\": \(count), \"seq_len\": \(length), \"tokens\": \(count * length), \"document_masking\": \(masked)}")
        } else {
            print(String(format: "loss %.4f  perplexity %.2f  (%d windows of %d tokens: %d predicted tokens%@)",
                         Double(loss), perplexity, count, length, count * length, masked ? "; documents kept apart" : ""))
        }
    }

    /// The window length: --seq-len, at most the model's context.
    private func windowLength(_ config: ModelConfig) throws -> Int {
        let length = seqLen ?? config.maxLength
        guard length <= config.maxLength else {
            throw KeelError("--seq-len \(length) is longer than the model's max_seq_len (\(config.maxLength))")
        }
        return length
    }

    /// How many windows to evaluate (announced on stderr), or an error when the data holds none.
    private func windowCount(_ windows: TokenWindows, length: Int, origin: String) throws -> Int {
        let count = maxWindows > 0 ? min(maxWindows, windows.count) : windows.count
        guard count > 0 else {
            throw KeelError("eval: the data has \(windows.tokenCount) tokens, fewer than --seq-len + 1 (\(length + 1))")
        }
        let source = dataset.map { "\($0) (\(split))" } ?? files.joined(separator: ", ")
        StandardStreams.error("eval: \(origin) on \(source): \(count) windows of \(length) tokens\n")
        return count
    }

    /// The fp32 model against its projections in `format`, window by window over a KV-cache decoder each.
    /// fp32 against `format` over windows 0..<count: every prediction, or with --llama-cpp-scoring those
    /// llama-perplexity scores (`score`).
    private func compare(_ model: Transformer, format: QuantizationFormat, windows: TokenWindows, count: Int, length: Int,
                         beginningOfText: Int32?) throws {
        let base = try Decoder(model: model), quantized = try Decoder(model: model, quantization: format)
        base.halfPrecisionAttention = attentionOption.attention == "f16"
        quantized.halfPrecisionAttention = base.halfPrecisionAttention
        let positions = try scoredPositions(length: length, beginningOfText: beginningOfText)
        var accuracy = QuantizationAccuracy()
        forEachWindow(windows, count: count, beginningOfText: beginningOfText) { inputs, targets in
            accuracy.add(inputs: inputs, targets: targets, positions: positions, base: base, quantized: quantized)
        }
        if json {
            let result: [String: Any] = [
                "format": format.rawValue, "tokens": accuracy.tokens, "perplexity_fp32": accuracy.basePerplexity,
                "perplexity": accuracy.quantizedPerplexity, "kl_mean": accuracy.meanDivergence, "kl_p99": accuracy.divergence99,
                "kl_max": accuracy.largestDivergence, "top1_agreement": accuracy.topOneAgreement,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "%@ against fp32 over %d tokens%@: perplexity %.4f against %.4f (%+.2f%%), KL divergence mean %.6f, 99th percentile %.6f, max %.6f; same top token %.2f%%",
                         format.rawValue, accuracy.tokens, llamaCppScoring ? " (as llama-perplexity scores them)" : "",
                         accuracy.quantizedPerplexity, accuracy.basePerplexity,
                         (accuracy.quantizedPerplexity / accuracy.basePerplexity - 1) * 100, accuracy.meanDivergence,
                         accuracy.divergence99, accuracy.largestDivergence, accuracy.topOneAgreement * 100))
        }
    }

    /// The perplexity of `decoder` over windows 0..<count, each run whole: every prediction scored, or with
    /// --llama-cpp-scoring the ones llama.cpp's `llama-perplexity -c LENGTH` scores on the same tokens — positions
    /// LENGTH/2 to LENGTH − 2 of each window, each predicting the window's next token — and, for a model that asks
    /// for `beginningOfText`, each window's first token replaced by it, as llama-perplexity replaces it (the windows
    /// then come from the text after it, as llama-perplexity's do).
    private func score(_ decoder: Decoder, label: String, windows: TokenWindows, count: Int, length: Int,
                       beginningOfText: Int32?) throws {
        let positions = try scoredPositions(length: length, beginningOfText: beginningOfText)
        var loss = 0.0, scored = 0
        forEachWindow(windows, count: count, beginningOfText: beginningOfText) { inputs, targets in
            let logits = decoder.logits(of: inputs)
            for position in positions {
                loss -= QuantizationAccuracy.logSoftmax(logits[position])[Int(targets[position])]
                scored += 1
            }
        }
        let perplexity = exp(loss / Double(scored))
        if json {
            print("{\"perplexity\": \(perplexity), \"scored_tokens\": \(scored), \"windows\": \(count), \"format\": \"\(label)\"}")
        } else {
            print(String(format: "perplexity %.4f%@ (%d windows, %d predictions, %@)", perplexity,
                         llamaCppScoring ? " as llama-perplexity -c \(length) scores it" : "", count, scored, label))
        }
    }

    /// The positions of a window whose predictions are scored: all, or with --llama-cpp-scoring those
    /// `llama-perplexity -c LENGTH` scores (LENGTH/2 to LENGTH − 2). Says how `beginningOfText` is read.
    private func scoredPositions(length: Int, beginningOfText: Int32?) throws -> Range<Int> {
        let positions = llamaCppScoring ? (length / 2)..<max(length / 2, length - 1) : 0..<length
        guard !positions.isEmpty else {
            throw KeelError("eval: windows of \(length) tokens leave nothing to score as llama-perplexity does (it scores positions length/2 to length − 2): use --seq-len 3 or more")
        }
        if let bos = beginningOfText {
            let note = llamaCppScoring ? "the text starts with it and each window's first token is replaced by it, as llama-perplexity does"
                : "each document starts with it, as training reads text, and windows are cut from the whole"
            StandardStreams.error("eval: note: the model expects token \(bos) before every text; \(note)\n")
        }
        return positions
    }

    /// Calls `body` with the inputs and targets of windows 0..<count; with --llama-cpp-scoring, each window's first
    /// input replaced by `beginningOfText` when given, as llama-perplexity replaces it.
    private func forEachWindow(_ windows: TokenWindows, count: Int, beginningOfText: Int32?, _ body: ([Int32], [Int32]) -> Void) {
        var inputs = [Int32](repeating: 0, count: windows.length), targets = inputs
        for window in 0..<count {
            inputs.withUnsafeMutableBufferPointer { i in
                targets.withUnsafeMutableBufferPointer { windows.copy(window: window, inputs: i.baseAddress!, targets: $0.baseAddress!) }
            }
            if llamaCppScoring, let bos = beginningOfText { inputs[0] = bos }
            body(inputs, targets)
        }
    }
}
