import Foundation
import KeelCore
import KeelInference
import KeelModel
import XCTest

/// Requests submitted at any time are generated together and each gets what it gets alone.
final class GenerationServiceTests: XCTestCase {
    private final class Results: @unchecked Sendable {
        let lock = NSLock()
        var finished: [Int: ([Int32], FinishReason)] = [:]
        var tokenCalls: [Int: Int] = [:]
        /// The request of each token, in the order the service's thread handed them out.
        var order: [Int] = []
    }

    func testConcurrentRequestsGetWhatTheyGetAlone() throws {
        let model = try DecoderTests.randomModel(DecoderTests.llama, seed: 12)
        let decoder = try Decoder(model: model)
        let prompts: [[Int32]] = [[1, 2, 3], [7], [4, 4, 4, 4], [9, 8]]
        let options = SamplingOptions(temperature: 1, topK: 0, seed: 21)
        let alone = prompts.map { decoder.generate(prompts: [$0], maxTokens: 20, options: options)[0] }
        let service = GenerationService(decoder: try Decoder(model: model))
        let results = Results(), done = DispatchGroup()
        for (index, prompt) in prompts.enumerated() {
            done.enter()
            // The third stops itself after 5 tokens, as a stop string would.
            service.submit(GenerationService.Request(
                prompt: prompt, maxTokens: 20, options: options,
                onToken: { generated in
                    results.lock.withLock { results.tokenCalls[index, default: 0] += 1 }
                    return !(index == 2 && generated.count == 5)
                },
                onFinish: { generated, reason in
                    results.lock.withLock { results.finished[index] = (generated, reason) }
                    done.leave()
                }))
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        for index in prompts.indices {
            let (generated, reason) = results.finished[index]!
            if index == 2 {
                XCTAssertEqual(generated, Array(alone[2].prefix(5)))
                XCTAssertEqual(reason, .stop)
            } else {
                XCTAssertEqual(generated, alone[index], "request \(index)")
                XCTAssertEqual(reason, .length)
            }
            XCTAssertEqual(results.tokenCalls[index], generated.count)
        }
        XCTAssertEqual(service.load, 0)
    }

    /// Requests that arrive while another is generating join its batch: from the next step on, each step advances
    /// all of them together (one pass over the weights for all), one token each.
    func testRequestsArrivingDuringGenerationShareItsSteps() throws {
        let model = try DecoderTests.randomModel(DecoderTests.llama, seed: 5)
        let service = GenerationService(decoder: try Decoder(model: model))
        let options = SamplingOptions(temperature: 0, seed: 1)
        let results = Results(), done = DispatchGroup()
        let firstToken = DispatchSemaphore(value: 0), othersQueued = DispatchSemaphore(value: 0)
        func request(_ index: Int) -> GenerationService.Request {
            GenerationService.Request(prompt: [Int32(index + 1)], maxTokens: 6, options: options,
                onToken: { generated in
                    // Request 0's first token holds its step until the others are queued, so they join the next.
                    if index == 0 && generated.count == 1 {
                        firstToken.signal()
                        othersQueued.wait()
                    }
                    results.lock.withLock { results.order.append(index) }
                    return true
                },
                onFinish: { generated, reason in
                    results.lock.withLock { results.finished[index] = (generated, reason) }
                    done.leave()
                })
        }
        done.enter()
        service.submit(request(0))
        firstToken.wait()
        for index in 1...2 {
            done.enter()
            service.submit(request(index))
        }
        othersQueued.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        // Step 1: request 0 alone; steps 2–6: all three; step 7: the two that joined late, their sixth tokens.
        let order = results.order
        let steps = [Array(order.prefix(1))] + stride(from: 1, to: 16, by: 3).map { Array(order[$0..<min($0 + 3, order.count)]) }
            + [Array(order.dropFirst(16))]
        XCTAssertEqual(steps.map { Set($0) }, [[0]] + Array(repeating: [0, 1, 2], count: 5) + [[1, 2]], "tokens per step: \(order)")
        XCTAssertEqual(order.count, 18)
        XCTAssertEqual((0...2).map { results.finished[$0]!.0.count }, [6, 6, 6])
    }

    /// With `parallel` 2, at most two requests generate at once: the third starts only when one has finished, the
    /// requests start in the order they came, each still gets what it gets alone; one whose client left while it
    /// waited ends unread, its prompt never run.
    func testAtMostParallelRequestsRunAndTheRestWaitTheirTurn() throws {
        let model = try DecoderTests.randomModel(DecoderTests.llama, seed: 8)
        let decoder = try Decoder(model: model)
        let options = SamplingOptions(temperature: 0, seed: 1)
        let prompts: [[Int32]] = [[1], [2, 3], [4], [5]]
        let alone = prompts.map { decoder.generate(prompts: [$0], maxTokens: 4, options: options)[0] }
        let service = GenerationService(decoder: try Decoder(model: model), parallel: 2)
        let results = Results(), done = DispatchGroup()
        for (index, prompt) in prompts.enumerated() {
            done.enter()
            service.submit(GenerationService.Request(
                prompt: prompt, maxTokens: 4, options: options,
                onToken: { _ in
                    results.lock.withLock { results.order.append(index) }
                    return true
                },
                onFinish: { generated, reason in
                    results.lock.withLock { results.finished[index] = (generated, reason) }
                    done.leave()
                },
                isAbandoned: { index == 3 }))
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        let order = results.order
        // Requests 0 and 1 share the first four steps; request 2 starts only after they have finished.
        XCTAssertEqual(Set(order.prefix(8)), [0, 1], "tokens: \(order)")
        XCTAssertEqual(Array(order.dropFirst(8)), [2, 2, 2, 2], "tokens: \(order)")
        for index in 0...2 { XCTAssertEqual(results.finished[index]!.0, alone[index], "request \(index)") }
        XCTAssertEqual(results.finished[3]!.0, [], "the abandoned request generates nothing")
        XCTAssertEqual(results.finished[3]!.1, .stop)
        XCTAssertFalse(order.contains(3))
        XCTAssertEqual(service.load, 0)
    }

}
