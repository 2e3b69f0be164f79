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
}
