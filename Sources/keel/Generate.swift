import ArgumentParser
import Foundation
import KeelCore
import KeelData
import KeelInference
import KeelKernels
import KeelTrain

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue prompts with a checkpoint, over a KV cache (optionally with quantized weights).",
        discussion: """
            Each --prompt is continued; several prompts are generated together, one batch per step. With one \
            prompt the text is printed as it is generated (held back while it may be the start of a --stop \
            string). Timings go to standard error.
            """)

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint), checkpoint directory, or a llama.cpp .gguf file (run in its own formats).")
    var checkpoint: String

    @Option(help: "Text to continue (repeat for a batch).")
    var prompt: [String] = []

    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate per prompt.")
    var maxTokens = 200

    @Option(help: "Softmax temperature; 0 is greedy.")
    var temperature: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Draw among the k most likely tokens (0: all).")
    var topK = 40

    @Option(name: .customLong("top-p"), help: "Draw among the most likely tokens holding this much probability (1: all).")
    var topP: Float = 1

    @Option(name: .customLong("repetition-penalty"), help: "Penalty on tokens already in the text (1: none).")
    var repetitionPenalty: Float = 1

    @Option(name: .customLong("presence-penalty"), help: "Subtracted from the logits of tokens generated so far (OpenAI's presence_penalty, -2 to 2).")
    var presencePenalty: Float = 0

    @Option(name: .customLong("frequency-penalty"), help: "Subtracted from the logits of tokens generated so far, once per time each was (OpenAI's frequency_penalty, -2 to 2).")
    var frequencyPenalty: Float = 0

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    @Option(help: "Stop a prompt's text at this string, which is not printed (repeatable).")
    var stop: [String] = []

    @OptionGroup var attentionOption: AttentionOption

    @Option(help: "Run the projections in a llama.cpp format: f16, q8_0, q4_0, q4_1, q5_0 or q4_k (quantized at load).")
    var quantize: String?

    @Flag(help: "Run the prompts once, untimed, before the timed run (as llama-bench warms up): the timings then leave out first-use costs — pages of a mapped file, cold caches, threads starting.")
    var warmup = false

    @Flag(help: "Take each --prompt as a user's message and format it as the model's chat template does (ChatML without one); the reply stops at the end of the assistant's turn.")
    var chat = false

    @Flag(help: "Print one JSON line per prompt (prompt, text, tokens, stop; with --chat the formatted prompt as chat_prompt) instead of the text.")
    var json = false

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must not be negative") }
        do {
            try options.validate()
        } catch {
            throw ValidationError("--\(error)")
        }
        if let quantize, QuantizationFormat(rawValue: quantize.lowercased()) == nil {
            throw ValidationError("--quantize must be one of \(QuantizationFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got \(quantize))")
        }
        guard !stop.contains("") else { throw ValidationError("--stop must not be empty") }
    }

    private var options: SamplingOptions {
        SamplingOptions(temperature: temperature, topK: topK, topP: topP, repetitionPenalty: repetitionPenalty,
                        presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, seed: seed)
    }

    func run() throws {
        let started = Date()
        let loaded = try InferenceModel.load(checkpoint, quantize: quantize.flatMap { QuantizationFormat(rawValue: $0.lowercased()) },
                                             attention: attentionOption.attention)
        let decoder = loaded.decoder, tokenizer = loaded.tokenizer
        // Only ids the tokenizer can decode: a model's vocabulary may be padded beyond.
        var options = self.options
        options.vocabulary = tokenizer.vocabSize
        let prompts = prompt.isEmpty ? ["\n"] : prompt
        let encoded = try prompts.map { text in
            // Special tokens' spellings are those tokens, as llama.cpp reads a prompt.
            guard chat else { return loaded.prompt(tokenizer.encodeRecognizingSpecialTokens(text)) }
            if let problem = loaded.chat.problem { throw KeelError(problem) }
            return loaded.prompt(try loaded.chat.prompt([(role: "user", content: text)], tokenizer: tokenizer), chat: true)
        }
        let context = loaded.model.config.maxLength
        for (index, tokens) in encoded.enumerated() where tokens.count > context {
            // Generation reads the last `context` tokens, as the model was trained on no more.
            StandardStreams.error("generate: note: prompt \(index + 1) is \(tokens.count) tokens, more than the model's context (\(context)): the model reads its last \(context)\(loaded.beginningOfText == nil ? "" : " (its first token kept)")\n")
        }
        let stops = InferenceModel.stops(stop, endOfGeneration: loaded.endOfGeneration, chat: chat ? loaded.chat : nil)
            .map { Array($0.utf8) }
        var streams = prompts.map { _ in TextStream(stops: stops) }
        let streaming = prompts.count == 1 && !json
        // A continuation is printed after its prompt; a chat reply alone.
        if streaming && !chat {
            try StandardStreams.output(prompts[0])
        }
        if warmup {
            _ = decoder.generate(prompts: encoded, maxTokens: 1, options: options, textStart: loaded.beginningOfText,
                                 shouldStop: { _, _ in false }, emit: { _, _ in })
        }
        let ready = Date()
        var firstToken: Date?
        var lostOutput: Error?
        let generated = decoder.generate(prompts: encoded, maxTokens: maxTokens, options: options, textStart: loaded.beginningOfText,
                                         shouldStop: { index, tokens in
            // A token's bytes may end inside a character: the stream holds them back until the rest comes.
            streams[index].update(tokens, decodedBy: tokenizer)
            if streaming {
                // Output that cannot be written ends the generation: no one would read the rest.
                do { try streams[index].flush() } catch { lostOutput = error; return true }
            }
            return streams[index].stopped
        }, emit: { _, _ in
            if firstToken == nil { firstToken = Date() }
        })
        if let lostOutput { throw lostOutput }
        let finished = Date()
        for (index, tokens) in generated.enumerated() {
            let text = String(decoding: streams[index].text, as: UTF8.self)
            if json {
                var line: [String: Any] = ["prompt": prompts[index], "text": text, "tokens": tokens.count,
                                           "stop": streams[index].stopped ? "string" : "length"]
                if chat { line["chat_prompt"] = try tokenizer.decodeText(encoded[index]) }
                let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else if streaming {
                try streams[index].finish()
                print()
            } else {
                print(chat ? text : prompts[index] + text)
            }
        }
        let total = generated.reduce(0) { $0 + $1.count }
        // The tokens read: a prompt longer than the context is read from its last `context` tokens.
        let promptTokens = encoded.reduce(0) { $0 + min($1.count, context) }
        let prefill = (firstToken ?? finished).timeIntervalSince(ready)
        let decode = finished.timeIntervalSince(firstToken ?? finished)
        StandardStreams.error(String(
            format: "%d prompt tokens in %.2f s (%.1f tokens/s), %d generated in %.2f s (%.1f tokens/s)%@; loaded in %.2f s\n",
            promptTokens, prefill, Double(promptTokens) / max(prefill, 1e-9), total, decode,
            Double(max(0, total - generated.count)) / max(decode, 1e-9), decoder.quantization.map { ", \($0.rawValue)" } ?? "",
            ready.timeIntervalSince(started)))
    }
}

/// The text of one generated sequence as it grows: cut at the first stop string, and printable up to what is
/// certain — whole UTF-8 characters, and not a tail that may be the start of a stop string.
///
/// Each update decodes only the new tokens (a text's bytes are its tokens' bytes one after another) and reads only
/// them for the stop strings (`StopStringSearch`): a token costs the same at the end of a long text as at its start,
/// whatever the stop strings.
struct TextStream {
    /// The text so far, cut before a stop string once one appears.
    private(set) var text: [UInt8] = []
    private(set) var stopped = false
    private var search: StopStringSearch
    private var printed = 0
    /// Tokens decoded into `text` so far.
    private var decoded = 0

    init(stops: [[UInt8]]) { search = StopStringSearch(stops) }

    /// Takes the generated tokens so far (those of the last update and any after them). A token the tokenizer
    /// cannot decode adds nothing.
    mutating func update(_ tokens: [Int32], decodedBy tokenizer: any TextTokenizer) {
        guard !stopped, tokens.count > decoded else { return }
        let added = (try? tokenizer.decode(Array(tokens[decoded...]))) ?? []
        decoded = tokens.count
        text += added
        // The text before held no stop string: a new one ends in the added bytes. Cut before the earliest.
        if let cut = search.read(added) {
            text.removeSubrange(cut...)
            stopped = true
        }
    }

    /// The bytes that are certain and not yet taken: whole UTF-8 characters, not a tail that a stop string starts
    /// with (unless the text has stopped).
    mutating func takeCertain() -> [UInt8] {
        var end = text.count
        if !stopped {
            // Hold back a tail that a stop string starts with.
            end -= search.pending
            // And an incomplete UTF-8 character.
            var start = end
            while start > printed, start > end - 4, text[start - 1] & 0xC0 == 0x80 { start -= 1 }
            if start > printed, start > 0, text[start - 1] >= 0xC0 {
                let needed = text[start - 1] >= 0xF0 ? 4 : text[start - 1] >= 0xE0 ? 3 : 2
                if end - (start - 1) < needed { end = start - 1 }
            }
        }
        guard end > printed else { return [] }
        defer { printed = end }
        return Array(text[printed..<end])
    }

    /// The bytes not yet taken, certain or not (the text is finished).
    mutating func takeRest() -> [UInt8] {
        defer { printed = text.count }
        return printed < text.count ? Array(text[printed...]) : []
    }

    /// Writes what is certain and not yet written.
    mutating func flush() throws {
        let bytes = takeCertain()
        if !bytes.isEmpty { try StandardStreams.output(bytes) }
    }

    /// Writes the rest.
    mutating func finish() throws {
        let bytes = takeRest()
        if !bytes.isEmpty { try StandardStreams.output(bytes) }
    }
}
