import ArgumentParser
import Foundation
import Synchronization
import KeelCore
import KeelData
import KeelInference
import KeelKernels
import KeelTrain

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a checkpoint over HTTP with OpenAI's completions and chat completions API.",
        discussion: """
            POST /v1/completions and /v1/chat/completions (streamed as server-sent events with "stream": true), \
            GET /v1/models. Requests that arrive together are generated together, one batch per step. Chat \
            messages are laid out in ChatML (<|im_start|>role … <|im_end|>), which ends each reply, with the \
            default system message of the model's own ChatML template (an imported model's or a GGUF file's); a \
            model's end-of-sequence and end-of-turn tokens end completions too. A malformed \
            request gets a 4xx with an OpenAI-style error; the server stays up. SIGTERM, SIGUSR1 or Ctrl-C stops it \
            gracefully: no new connections, the requests in flight given --shutdown-timeout seconds to finish, \
            those still generating then ended with an error the client sees; a second Ctrl-C stops at once.
            """)

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint), checkpoint directory, or a llama.cpp .gguf file (run in its own formats).")
    var checkpoint: String

    @Option(help: "IPv4 address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed).")
    var port = 8080

    @OptionGroup var attentionOption: AttentionOption

    @Option(help: "Run the projections in a llama.cpp format: f16, q8_0, q4_0, q4_1, q5_0 or q4_k.")
    var quantize: String?

    @Option(help: "The model's name in responses and /v1/models.")
    var name = "keel"

    @Option(help: "Seconds a request may take to arrive, and a response may wait for its client at a time (llama.cpp's --timeout); a late request gets 408.")
    var timeout = 60

    @Flag(help: "When a sequence fills the model's context, go on from its last half (llama.cpp's --context-shift) instead of ending the reply there (finish_reason \"length\").")
    var contextShift = false

    @Option(help: "The most requests generated at once (llama.cpp's --parallel); more wait their turn. Each holds a KV cache of up to the model's context.")
    var parallel = 4

    @Option(name: .customLong("ctx-size"), help: ArgumentHelp("Tokens a request may take, prompt and reply (llama.cpp's --ctx-size); 0: the model's whole context. Default: the model's context, up to 8192 — a prompt is read in one pass, whose memory and time grow with its length.", valueName: "tokens"))
    var contextSize: Int?

    @Option(help: "The most connections handled at once; one more is answered 503 at once.")
    var maxConnections = 256

    @Option(help: ArgumentHelp("After SIGTERM, SIGUSR1 or Ctrl-C, seconds the requests in flight have to finish before those still generating are ended with an error (Kubernetes allows 30 before SIGKILL).", valueName: "seconds"))
    var shutdownTimeout = 25

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second (got \(timeout))") }
        guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1 (got \(parallel))") }
        if let contextSize, contextSize < 0 || contextSize == 1 { throw ValidationError("--ctx-size must be 0 or at least 2 (got \(contextSize))") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1 (got \(maxConnections))") }
        guard (0...86_400).contains(shutdownTimeout) else { throw ValidationError("--shutdown-timeout must be 0 to 86400 seconds (got \(shutdownTimeout))") }
        if let quantize, QuantizationFormat(rawValue: quantize.lowercased()) == nil {
            throw ValidationError("--quantize must be one of \(QuantizationFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got \(quantize))")
        }
    }

    func run() throws {
        let loaded = try InferenceModel.load(checkpoint, quantize: quantize.flatMap { QuantizationFormat(rawValue: $0.lowercased()) },
                                             attention: attentionOption.attention)
        if let problem = loaded.chat.problem { throw KeelError(problem) }
        let modelContext = loaded.model.config.maxLength
        let context = contextSize == 0 ? modelContext : min(modelContext, contextSize ?? 8192)
        let api = CompletionAPI(service: GenerationService(decoder: loaded.decoder, textStart: loaded.beginningOfText, parallel: parallel), tokenizer: loaded.tokenizer, model: name,
                                contextLength: context, chatFormat: loaded.chat,
                                endOfGeneration: loaded.endOfGeneration, beginningOfText: loaded.beginningOfText,
                                chatStart: loaded.chatStart, shiftsContext: contextShift, cutShort: CutShort())
        // From now on SIGTERM (a rollout, a scheduler), SIGUSR1 and Ctrl-C stop the server gracefully, a second Ctrl-C
        // at once; while the model loads they end the process at once, as there is nothing to finish.
        StopSignals.install()
        let server: HTTPServer
        do {
            server = try HTTPServer(host: host, port: port, timeoutSeconds: timeout, maxConnections: maxConnections)
        } catch let error as KeelError {
            throw KeelError("serve: \(error.message)")
        }
        StandardStreams.error("chat format: \(loaded.chat.summary)\n")
        StandardStreams.error("context: \(context) tokens per request\(context < modelContext ? " (of the model's \(modelContext); --ctx-size)" : "")\n")
        try StandardStreams.output("serving \(name) on http://\(host):\(server.port)/v1\n")
        server.run({ api.handle($0) }, until: { StopSignals.received != nil })
        stop(server, api, signal: StopSignals.received!)
    }

    /// Lets the requests in flight finish within `shutdownTimeout`, then ends those still generating (each client told
    /// so: an error event ends a stream, a 503 answers the others) and gives them a moment to be sent.
    private func stop(_ server: HTTPServer, _ api: CompletionAPI, signal: Int32) {
        let name = StopSignals.name(of: signal)
        StandardStreams.error("serve: \(name): no new connections; \(server.openConnections) in flight, given up to \(shutdownTimeout) s"
                              + (signal == SIGINT ? " (Ctrl-C again stops at once)" : "") + "\n")
        let deadline = Date().addingTimeInterval(Double(shutdownTimeout))
        while server.openConnections > 0, Date() < deadline { usleep(20_000) }
        if server.openConnections > 0 {
            StandardStreams.error("serve: ending the \(server.openConnections) request(s) still in flight\n")
            api.cutShort.set()
            let last = Date().addingTimeInterval(2)
            while server.openConnections > 0, Date() < last { usleep(20_000) }
        }
        StandardStreams.error("serve: stopped by \(name)\n")
    }
}

/// Set when a stopping server's grace period is over: the requests still generating end, each client told so.
final class CutShort: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// OpenAI's completions and chat completions over a `GenerationService`.
struct CompletionAPI: Sendable {
    let service: GenerationService
    let tokenizer: any TextTokenizer
    let model: String
    let contextLength: Int
    let chatFormat: ChatFormat
    /// What ends a completion or chat reply besides its stop strings (`InferenceModel.endOfGeneration`).
    let endOfGeneration: [String]
    /// Starts every completion prompt, when the model asks for it (`InferenceModel.beginningOfText`).
    let beginningOfText: Int32?
    /// Starts every chat prompt that the chat template has not started with it (`InferenceModel.chatStart`).
    let chatStart: Int32?
    /// Whether a sequence that fills the context goes on from its last half (`GenerationBatch.advance`); otherwise a
    /// reply ends there, as llama.cpp's server ends it without `--context-shift`.
    let shiftsContext: Bool
    /// Ends the requests still generating when the server stops.
    let cutShort: CutShort

    func handle(_ connection: HTTPConnection) {
        switch connection.readRequest(maximumBody: 8 << 20) {
        case .failure(let failure):
            connection.respond(status: failure.status, body: Self.error(failure.message), draining: true)
        case .success(let request):
            let path = request.path.split(separator: "?").first.map(String.init) ?? request.path
            switch (request.method, path) {
            case ("GET", "/v1/models"):
                connection.respond(status: 200, body: Self.json(["object": "list", "data": [["id": model, "object": "model", "owned_by": "keel", "created": 0]]]))
            case ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"):
                do {
                    try complete(request, chat: path.hasSuffix("chat/completions"), on: connection)
                } catch let failure as HTTPFailure {
                    connection.respond(status: failure.status, body: Self.error(failure.message, code: failure.code))
                } catch {
                    connection.respond(status: 500, body: Self.error("\(error)", type: "server_error"))
                }
            case (_, "/v1/models"), (_, "/v1/completions"), (_, "/v1/chat/completions"):
                connection.respond(status: 405, body: Self.error("\(request.method) is not allowed on \(path)"))
            default:
                connection.respond(status: 404, body: Self.error("no route \(request.method) \(path)"))
            }
        }
    }

    /// The parameters of a completion request, checked.
    private struct Parameters {
        var prompt: [Int32]
        var maxTokens: Int
        var options: SamplingOptions
        var stops: [String]
        var stream: Bool
        /// A stream ends with a chunk of the request's token counts (`stream_options.include_usage`).
        var streamsUsage: Bool
    }

    private func parameters(_ body: [String: Any], chat: Bool) throws -> Parameters {
        func bad(_ message: String) -> HTTPFailure { HTTPFailure(status: 400, message: message) }
        func number(_ key: String, _ fallback: Double) throws -> Double {
            guard let value = body[key], !(value is NSNull) else { return fallback }
            guard let number = value as? NSNumber, !isJSONBoolean(value), number.doubleValue.isFinite,
                  abs(number.doubleValue) < 1e15 else { throw bad("'\(key)' must be a number") }
            return number.doubleValue
        }
        var prompt: [Int32]
        if chat {
            guard let messages = body["messages"] as? [[String: Any]], !messages.isEmpty else {
                throw bad("'messages' must be a non-empty array of {role, content} objects")
            }
            let conversation = try messages.map { message in
                guard let role = message["role"] as? String, let content = try Self.text(of: message["content"]) else {
                    throw bad("each message needs a string 'role' and a 'content': a string, or a list of text parts")
                }
                return (role, content)
            }
            do {
                prompt = try chatFormat.prompt(conversation, tokenizer: tokenizer)
            } catch let error as JinjaError {
                // The template's own refusal (roles out of order, say) is the request's fault.
                throw bad("the model's chat template refused these messages: \(error)")
            }
        } else if let text = body["prompt"] as? String {
            // Special tokens' spellings are those tokens (a hand-written ChatML prompt), as llama.cpp's server and
            // Hugging Face tokenizers read a prompt.
            prompt = tokenizer.encodeRecognizingSpecialTokens(text)
        } else if let prompts = body["prompt"] as? [String], prompts.count == 1 {
            prompt = tokenizer.encodeRecognizingSpecialTokens(prompts[0])
        } else {
            throw bad("'prompt' must be a string (one prompt per request)")
        }
        let requested: [String]
        switch body["stop"] {
        case nil, is NSNull: requested = []
        case let stop as String: requested = [stop]
        case let list as [String]: requested = list
        default: throw bad("'stop' must be a string or an array of strings")
        }
        guard !requested.contains("") else { throw bad("'stop' strings must not be empty") }
        // Every new token is searched for each of them, on the thread all requests share: a bounded list (OpenAI's
        // API takes four).
        guard requested.count <= Self.stopLimit.count, requested.allSatisfy({ $0.utf8.count <= Self.stopLimit.bytes }) else {
            throw bad("'stop' takes at most \(Self.stopLimit.count) strings of at most \(Self.stopLimit.bytes) bytes each")
        }
        let stops = InferenceModel.stops(requested, endOfGeneration: endOfGeneration, chat: chat ? chatFormat : nil)
        // The newer chat field first, as OpenAI reads it.
        let limitField = chat && body["max_completion_tokens"].map({ !($0 is NSNull) }) == true ? "max_completion_tokens" : "max_tokens"
        let maxTokens = try number(limitField, chat ? 256 : 16)
        guard maxTokens >= 1, maxTokens == maxTokens.rounded(), maxTokens <= 1_000_000 else {
            throw bad("'\(limitField)' must be a positive integer")
        }
        // What Keel does not do is refused, not ignored: a client counting on it would read a wrong answer.
        guard try number("n", 1) == 1 else {
            throw bad("'n' must be 1: Keel returns one choice per request (send several requests: they are generated together)")
        }
        for field in ["logprobs", "echo", "top_logprobs"] {
            guard let value = body[field], !(value is NSNull) else { continue }
            guard isJSONBoolean(value), value as? Bool == false else { throw bad("'\(field)' is not supported") }
        }
        // Tools, structured output, logit biases, suffixes and best-of would all change what comes back; without them a
        // client would read plain text as if they had been honoured.
        for field in ["tools", "tool_choice", "functions", "function_call", "logit_bias", "suffix"] {
            guard let value = body[field], !(value is NSNull) else { continue }
            throw bad("'\(field)' is not supported")
        }
        if let format = body["response_format"], !(format is NSNull), (format as? [String: Any])?["type"] as? String != "text" {
            throw bad("'response_format' other than {\"type\": \"text\"} is not supported")
        }
        guard try number("best_of", 1) == 1 else { throw bad("'best_of' must be 1") }
        // top_k: vLLM's -1 and 0 mean all tokens; top_p 0 (OpenAI's range is 0 to 1), the most likely token alone.
        let topK = try number("top_k", 0), topP = try number("top_p", 1), temperature = try number("temperature", 1)
        guard topK == topK.rounded() else { throw bad("'top_k' must be an integer") }
        let options = SamplingOptions(temperature: topP == 0 ? 0 : Float(temperature), topK: max(0, Int(topK)),
                                      topP: topP == 0 ? 1 : Float(topP),
                                      repetitionPenalty: Float(try number("repetition_penalty", 1)),
                                      presencePenalty: Float(try number("presence_penalty", 0)),
                                      frequencyPenalty: Float(try number("frequency_penalty", 0)),
                                      seed: try seed(body["seed"]),
                                      // Only ids the tokenizer can decode: a model's vocabulary may be padded beyond.
                                      vocabulary: tokenizer.vocabSize)
        do {
            try options.validate()
        } catch {
            throw bad("\(error)")
        }
        let stream: Bool
        switch body["stream"] {
        case nil, is NSNull: stream = false
        case let value? where isJSONBoolean(value): stream = value as? Bool ?? false
        default: throw bad("'stream' must be true or false")
        }
        var streamsUsage = false
        switch body["stream_options"] {
        case nil, is NSNull: break
        case let options as [String: Any]:
            guard stream else { throw bad("'stream_options' is only allowed with \"stream\": true") }
            switch options["include_usage"] {
            case nil, is NSNull: break
            case let value? where isJSONBoolean(value): streamsUsage = value as? Bool ?? false
            default: throw bad("'stream_options.include_usage' must be true or false")
            }
        default: throw bad("'stream_options' must be an object")
        }
        prompt = InferenceModel.prompt(prompt, beginningOfText: chat ? chatStart : beginningOfText, endOfText: tokenizer.endOfText)
        // The model reads at most its context: a longer prompt would lose its start (the system message, the template's
        // header), so it is refused, as OpenAI and llama.cpp refuse it; with --context-shift, read from its last
        // part, as llama.cpp's server then truncates it.
        let limit: Int
        if shiftsContext {
            prompt = contextWindow(of: prompt, count: contextLength, keeping: beginningOfText)
            limit = Int(maxTokens)
        } else {
            guard prompt.count < contextLength else {
                throw HTTPFailure(status: 400, message: "the prompt is \(prompt.count) tokens, and the context is \(contextLength): "
                    + "at most \(contextLength - 1) leave room for a reply", code: "context_length_exceeded")
            }
            // (An empty prompt is read as one token: `GenerationBatch.admit`.)
            limit = min(Int(maxTokens), contextLength - max(1, prompt.count))
        }
        return Parameters(prompt: prompt, maxTokens: limit, options: options, stops: stops, stream: stream, streamsUsage: streamsUsage)
    }

    /// A request's `seed`: a 64-bit signed integer, taken as its bits; without one, a random seed, so that requests
    /// without seeds draw differently, as OpenAI's do (the log line gives it as the integer to send back).
    private func seed(_ value: Any?) throws -> UInt64 {
        guard let value, !(value is NSNull) else { return UInt64(bitPattern: Int64.random(in: .min ... .max)) }
        // Exactly, not through a Double: a seed the log names (any Int64) must come back as the same bits. Foundation
        // reads large negative integers as NSDecimalNumber, whose Int64(exactly:) fails when the value ends in a zero:
        // those are read from their digits.
        guard let number = value as? NSNumber, !isJSONBoolean(value),
              let exact = (number as? NSDecimalNumber).map({ Int64($0.stringValue) }) ?? Int64(exactly: number) else {
            throw HTTPFailure(status: 400, message: "'seed' must be an integer from -2^63 to 2^63 - 1")
        }
        return UInt64(bitPattern: exact)
    }

    /// A message's text: its `content` string, or the text parts of a list joined by newlines (as vLLM joins them);
    /// null content (an assistant's tool call's) is empty. Nil for anything else; a part that is not text
    /// is refused.
    private static func text(of content: Any?) throws -> String? {
        switch content {
        case let text as String: return text
        case is NSNull: return ""
        case let parts as [[String: Any]]:
            return try parts.map { part in
                guard part["type"] as? String == "text", let text = part["text"] as? String else {
                    throw HTTPFailure(status: 400, message: "Keel's models read text: a content part must be {\"type\": \"text\", \"text\": …}")
                }
                return text
            }.joined(separator: "\n")
        default: return nil
        }
    }

    private func complete(_ request: HTTPRequest, chat: Bool, on connection: HTTPConnection) throws {
        guard let body = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any] else {
            throw HTTPFailure(status: 400, message: "the body must be a JSON object")
        }
        let parameters = try parameters(body, chat: chat)
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = Int(Date().timeIntervalSince1970)
        let state = RequestState(stops: parameters.stops.map { Array($0.utf8) })
        let finished = DispatchSemaphore(value: 0)
        let model = self.model
        @Sendable func usage() -> [String: Int] {
            ["prompt_tokens": parameters.prompt.count, "completion_tokens": state.tokens, "total_tokens": parameters.prompt.count + state.tokens]
        }
        /// One event of a stream; with `include_usage`, every chunk has a null usage and the last one, of no choices,
        /// the counts (as OpenAI sends them).
        @Sendable func event(choices: [[String: Any]], usage: [String: Int]? = nil) -> String {
            var object: [String: Any] = ["id": id, "object": chat ? "chat.completion.chunk" : "text_completion", "created": created,
                                         "model": model, "choices": choices]
            if parameters.streamsUsage { object["usage"] = usage.map { $0 as Any } ?? NSNull() }
            return String(decoding: Self.json(object), as: UTF8.self)
        }
        @Sendable func chunk(_ text: String?, role: Bool = false, finish: FinishReason? = nil) -> String {
            let choice: [String: Any]
            if chat {
                var delta: [String: Any] = [:]
                if role { delta["role"] = "assistant" }
                if let text { delta["content"] = text }
                choice = ["index": 0, "delta": delta, "finish_reason": finish?.rawValue ?? NSNull()]
            } else {
                choice = ["index": 0, "text": text ?? "", "finish_reason": finish?.rawValue ?? NSNull(), "logprobs": NSNull()]
            }
            return event(choices: [choice])
        }
        if parameters.stream {
            guard connection.beginEvents(), !chat || connection.event(chunk(nil, role: true)) else { return }
        }
        let tokenizer = self.tokenizer
        service.submit(GenerationService.Request(
            prompt: parameters.prompt, maxTokens: parameters.maxTokens, options: parameters.options,
            onToken: { generated in
                state.stream.update(generated, decodedBy: tokenizer)
                if parameters.stream {
                    let delta = state.stream.takeCertain()
                    // A token that adds nothing certain yet (part of a character, or of what may be a stop string)
                    // writes nothing: the client's leaving is then seen by looking.
                    state.clientHasGone = delta.isEmpty ? connection.clientHasGone
                        : !connection.event(chunk(String(decoding: delta, as: UTF8.self)))
                } else {
                    // Nothing is written until the end: a client that left is seen only by looking.
                    state.clientHasGone = connection.clientHasGone
                }
                state.wasCutShort = cutShort.isSet
                return !state.stream.stopped && !state.clientHasGone && !state.wasCutShort
            },
            onFinish: { generated, reason in
                state.tokens = generated.count
                state.reason = state.stream.stopped ? .stop : reason
                finished.signal()
            },
            // A request that waited its turn while its client left is not run at all.
            isAbandoned: {
                state.clientHasGone = connection.clientHasGone
                state.wasCutShort = cutShort.isSet
                return state.clientHasGone || state.wasCutShort
            }))
        finished.wait()
        // One line per request, as llama.cpp's server logs them.
        StandardStreams.error("\(id): \(parameters.prompt.count) prompt tokens, \(state.tokens) generated, seed \(Int64(bitPattern: parameters.options.seed)), "
            + (state.clientHasGone ? "ended early: the client has gone"
               : state.wasCutShort ? "ended early: the server is stopping" : "finish reason \(state.reason.rawValue)") + "\n")
        if state.wasCutShort && !state.clientHasGone {
            // Not a reply that looks complete: a stream ends with an error event (OpenAI's clients raise it), no [DONE].
            let message = "the server is stopping: the reply was cut short after \(state.tokens) tokens; send the request again"
            if parameters.stream {
                _ = connection.event(String(decoding: Self.error(message, type: "server_error"), as: UTF8.self))
                connection.close()
            } else {
                connection.respond(status: 503, body: Self.error(message, type: "server_error"))
            }
            return
        }
        if parameters.stream {
            let rest = state.stream.takeRest()
            if !rest.isEmpty { _ = connection.event(chunk(String(decoding: rest, as: UTF8.self))) }
            _ = connection.event(chunk(nil, finish: state.reason))
            if parameters.streamsUsage { _ = connection.event(event(choices: [], usage: usage())) }
            _ = connection.event("[DONE]")
            connection.close()
            return
        }
        let text = String(decoding: state.stream.text, as: UTF8.self)
        let choice: [String: Any] = chat
            ? ["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": state.reason.rawValue]
            : ["index": 0, "text": text, "finish_reason": state.reason.rawValue, "logprobs": NSNull()]
        connection.respond(status: 200, body: Self.json([
            "id": id, "object": chat ? "chat.completion" : "text_completion", "created": created, "model": model,
            "choices": [choice], "usage": usage(),
        ]))
    }

    /// What one request's callbacks share: its text as it grows, and how it ended.
    private final class RequestState: @unchecked Sendable {
        var stream: TextStream
        var tokens = 0
        var reason = FinishReason.length
        /// The client closed the connection, or stopped reading a stream: the request ended for it.
        var clientHasGone = false
        /// Whether the server's stopping ended the request.
        var wasCutShort = false
        init(stops: [[UInt8]]) { stream = TextStream(stops: stops) }
    }

    /// The most stop strings a request may give, and their longest.
    static let stopLimit = (count: 32, bytes: 1024)

    static func json(_ object: Any) -> Data { (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data() }

    static func error(_ message: String, type: String = "invalid_request_error", code: String? = nil) -> Data {
        json(["error": ["message": message, "type": type, "param": NSNull(), "code": code.map { $0 as Any } ?? NSNull()]])
    }
}
