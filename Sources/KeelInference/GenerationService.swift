import Foundation

/// Generation for requests that arrive at any time (a server's): one thread runs a `GenerationBatch`, admitting
/// each request as it comes and advancing every running one together, so concurrent requests share each pass over
/// the weights.
public final class GenerationService: @unchecked Sendable {
    /// One request: its prompt, limits and sampling, and what to do with its tokens.
    public struct Request: Sendable {
        public let prompt: [Int32]
        public let maxTokens: Int
        public let options: SamplingOptions
        /// Called on the service's thread with the request's tokens so far after each new one; returns whether to
        /// go on (false: a stop string came, or the client has gone).
        public let onToken: @Sendable (_ generated: [Int32]) -> Bool
        /// Called on the service's thread once, when the request ends.
        public let onFinish: @Sendable (_ generated: [Int32], _ reason: FinishReason) -> Void
        /// Called on the service's thread before a queued request starts: true when nobody waits for it any more (its
        /// client has gone), and it ends at once, unread, without its prompt being run.
        public let isAbandoned: @Sendable () -> Bool

        public init(prompt: [Int32], maxTokens: Int, options: SamplingOptions,
                    onToken: @escaping @Sendable ([Int32]) -> Bool,
                    onFinish: @escaping @Sendable ([Int32], FinishReason) -> Void,
                    isAbandoned: @escaping @Sendable () -> Bool = { false }) {
            self.prompt = prompt
            self.maxTokens = maxTokens
            self.options = options
            self.onToken = onToken
            self.onFinish = onFinish
            self.isAbandoned = isAbandoned
        }
    }

    private let batch: GenerationBatch
    private let condition = NSCondition()
    private var pending: [(id: Int, request: Request)] = []
    private var running: [Int: Request] = [:]
    private var nextID = 0
    /// The most requests generated at once; later ones wait their turn, in order.
    public let parallel: Int

    /// `textStart`: the token the model's texts start with, kept first when a text is cut to the context. `parallel`:
    /// the most requests generated at once (llama.cpp's server slots): each holds a KV cache of up to the model's
    /// context, so a burst of requests admitted all at once could take more memory than the machine has.
    public init(decoder: Decoder, textStart: Int32? = nil, parallel: Int = .max) {
        precondition(parallel >= 1, "at least one request at a time")
        self.parallel = parallel
        batch = GenerationBatch(decoder: decoder, textStart: textStart)
        let thread = Thread { [self] in run() }
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Queues `request`; it joins the running ones at the next step.
    public func submit(_ request: Request) {
        condition.lock()
        pending.append((nextID, request))
        nextID += 1
        condition.signal()
        condition.unlock()
    }

    /// Requests queued or running.
    public var load: Int {
        condition.lock()
        defer { condition.unlock() }
        return pending.count + running.count
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && batch.isEmpty { condition.wait() }
            let admitted = Array(pending.prefix(max(0, parallel - running.count)))
            pending.removeFirst(admitted.count)
            condition.unlock()
            for (id, request) in admitted {
                if request.isAbandoned() {
                    request.onFinish([], .stop)
                    continue
                }
                condition.lock()
                running[id] = request
                condition.unlock()
                batch.admit(id: id, prompt: request.prompt, maxTokens: request.maxTokens, options: request.options)
            }
            if batch.isEmpty { continue }
            let ended = batch.advance { id, _, generated in
                condition.lock()
                let request = running[id]!
                condition.unlock()
                return request.onToken(generated)
            }
            for (id, generated, reason) in ended {
                condition.lock()
                let request = running.removeValue(forKey: id)!
                condition.unlock()
                request.onFinish(generated, reason)
            }
        }
    }
}
