import Foundation
import KeelCore
import KeelData
import XCTest

/// Preference pairs in TRL's formats: explicit prompts as text and as conversations, prompts found as what the two
/// responses share (TRL's `extract_prompt`, whose results are written out here by hand), and bad lines.
final class PreferencePairsTests: XCTestCase {
    private func formatter() throws -> (SupervisedFormatter, any TextTokenizer) {
        let tokenizer = try DataFixtures.chatTokenizer()
        return (try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 0), tokenizer)
    }

    /// Each response's whole text and its trained runs.
    private func sides(_ pair: PreferencePair, _ tokenizer: any TextTokenizer) throws -> [(String, [String])] {
        try [pair.chosen, pair.rejected].map { (try tokenizer.decodeText($0.tokens), try DataFixtures.trainedRuns($0, tokenizer)) }
    }

    func testTextPairsTrainOnEachCompletionAndTheEndOfSequence() throws {
        let (formatter, tokenizer) = try formatter()
        let pair = try formatter.pair(json: #"{"prompt": "Sky?", "chosen": " Blue.", "rejected": " Green."}"#)
        let result = try sides(pair, tokenizer)
        XCTAssertEqual(result[0].0, "Sky? Blue.<|endoftext|>")
        XCTAssertEqual(result[0].1, [" Blue.<|endoftext|>"])
        XCTAssertEqual(result[1].0, "Sky? Green.<|endoftext|>")
        XCTAssertEqual(result[1].1, [" Green.<|endoftext|>"])
    }

    func testConversationalPairsRenderThePromptWithTheGenerationPrompt() throws {
        let (formatter, tokenizer) = try formatter()
        let pair = try formatter.pair(json: """
            {"prompt": [{"role": "user", "content": "Sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}], \
            "rejected": [{"role": "assistant", "content": "Green."}]}
            """)
        let result = try sides(pair, tokenizer)
        XCTAssertEqual(result[0].0, "<|im_start|>user\nSky?<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n")
        // A completion is everything the template writes after the prompt, as TRL takes it: the newline after the end
        // marker too.
        XCTAssertEqual(result[0].1, ["Blue.<|im_end|>\n"])
        XCTAssertEqual(result[1].1, ["Green.<|im_end|>\n"])
    }

    /// A GRPO completion is rendered for a reward model as a pair's chosen completion is for its training: the same
    /// tokens, through the end-of-sequence token or the end of the turn, where the model learnt to read the reward.
    func testARewardExampleIsRenderedAsAPairsCompletion() throws {
        let (formatter, tokenizer) = try formatter()
        for (task, pair) in [(#"{"prompt": "Sky?"}"#, #"{"prompt": "Sky?", "chosen": " Blue.", "rejected": "x"}"#),
                             (#"{"prompt": [{"role": "user", "content": "Sky?"}]}"#,
                              #"{"prompt": [{"role": "user", "content": "Sky?"}], "chosen": [{"role": "assistant", "content": " Blue."}], "rejected": [{"role": "assistant", "content": "x"}]}"#)] {
            let example = try formatter.rewardExample(try formatter.taskPrompt(json: task), completion: " Blue.")
            let chosen = try formatter.pair(json: pair).chosen
            XCTAssertEqual(example, chosen, task)
            XCTAssertTrue(try tokenizer.decodeText(example.tokens).hasSuffix(task.contains("role") ? "<|im_end|>\n" : "<|endoftext|>"))
        }
    }

    func testAnImplicitPromptIsWhatTheResponsesShareUpToTheSpaceBeforeTheirDifference() throws {
        let (formatter, tokenizer) = try formatter()
        // HH-RLHF's layout: both strings hold the whole dialogue.
        let pair = try formatter.pair(json: #"{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello there", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away"}"#)
        let result = try sides(pair, tokenizer)
        // extract_prompt: {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " Hello there", "rejected": " Go away"}
        XCTAssertEqual(result[0].1, [" Hello there<|endoftext|>"])
        XCTAssertEqual(result[1].1, [" Go away<|endoftext|>"])
        XCTAssertEqual(result[1].0, "\n\nHuman: Hi\n\nAssistant: Go away<|endoftext|>")
    }

    func testAnImplicitPromptOfConversationsIsTheirSharedMessages() throws {
        let (formatter, tokenizer) = try formatter()
        let pair = try formatter.pair(json: """
            {"chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}], \
            "rejected": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Green."}]}
            """)
        let result = try sides(pair, tokenizer)
        XCTAssertEqual(result[0].1, ["Blue.<|im_end|>\n"])
        XCTAssertEqual(result[1].1, ["Green.<|im_end|>\n"])
    }

    func testWithoutADifferenceThePromptStopsBeforeTheShorterOnesLastCharacter() throws {
        // extract_prompt({"chosen": "abc", "rejected": "abcd"}) == {"prompt": "ab", "chosen": "c", "rejected": "cd"}
        let (formatter, tokenizer) = try formatter()
        let result = try sides(try formatter.pair(json: #"{"chosen": "abc", "rejected": "abcd"}"#), tokenizer)
        XCTAssertEqual(result[0].1, ["c<|endoftext|>"])
        XCTAssertEqual(result[1].1, ["cd<|endoftext|>"])
    }

    func testBadPairsAreRefusedWithTheReason() throws {
        let (formatter, _) = try formatter()
        let cases: [(String, String)] = [
            (#"{"prompt": "a", "chosen": "b"}"#, #"needs "chosen" and "rejected""#),
            (#"["a", "b"]"#, "must be a JSON object"),
            (#"{"prompt": "a", "chosen": "b", "rejected": [{"role": "assistant", "content": "c"}]}"#, "must all be strings or all be lists"),
            (#"{"chosen": "", "rejected": "b"}"#, "there is no prompt to find"),
            (#"{"chosen": "ab", "rejected": [{"role": "assistant", "content": "c"}]}"#, "must both be strings or both be lists"),
            (#"{"prompt": [], "chosen": [], "rejected": []}"#, #""prompt" must be a non-empty list of messages"#),
        ]
        for (line, reason) in cases {
            XCTAssertThrowsError(try formatter.pair(json: line), line) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(line): \(error)")
            }
        }
    }
}
