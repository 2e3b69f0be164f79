import Foundation
import KeelData
import XCTest

/// Chat data made into supervised examples: which tokens are trained on, for Keel's ChatML (generation spans) and
/// for real models' templates (turns found as differences of renderings), prompt–completion pairs, and bad input.
final class SupervisedExamplesTests: XCTestCase {
    private let conversation = """
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4, café."}]}
        """

    func testKeelChatMLTrainsOnWhatTheAssistantWrites() throws {
        let tokenizer = try DataFixtures.chatTokenizer()
        let formatter = try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 2)
        let example = try formatter.example(json: conversation.replacingOccurrences(of: "\n", with: " "))
        XCTAssertEqual(try tokenizer.decodeText(example.tokens), """
            <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n\
            <|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4, café.<|im_end|>\n
            """)
        XCTAssertEqual(try DataFixtures.trainedRuns(example, tokenizer), ["Hello.<|im_end|>", "4, café.<|im_end|>"])
        // The markers are the special tokens, not their text.
        XCTAssertEqual(example.tokens.filter { $0 == 1 }.count, 5)
    }

    /// SmolLM2's and Qwen2.5's templates mark nothing: each assistant turn is the difference of two renderings.
    func testTurnsOfTemplatesWithoutGenerationBlocks() throws {
        let tokenizer = try DataFixtures.chatTokenizer()
        let directory = DataFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/chat_templates")
        for name in ["HuggingFaceTB-SmolLM2-135M-Instruct", "Qwen-Qwen2.5-7B-Instruct"] {
            let template = try String(contentsOf: directory.appendingPathComponent("\(name).jinja"), encoding: .utf8)
            let formatter = try SupervisedFormatter(template: template, tokenizer: tokenizer, endOfSequence: 2)
            let example = try formatter.example(json: conversation.replacingOccurrences(of: "\n", with: " "))
            XCTAssertEqual(try DataFixtures.trainedRuns(example, tokenizer), ["Hello.<|im_end|>\n", "4, café.<|im_end|>\n"], name)
            XCTAssertFalse(example.trained.first!, name)
        }
        // Qwen3's template renders an earlier assistant turn otherwise than the last one: refused, naming the turn.
        let qwen3 = try String(contentsOf: directory.appendingPathComponent("Qwen-Qwen3-0.6B.jinja"), encoding: .utf8)
        let formatter = try SupervisedFormatter(template: qwen3, tokenizer: tokenizer, endOfSequence: 2)
        XCTAssertThrowsError(try formatter.example(json: conversation.replacingOccurrences(of: "\n", with: " "))) {
            XCTAssertTrue("\($0)".hasPrefix("the chat template does not render the conversation up to message 3 (an assistant turn)"), "\($0)")
        }
    }

    func testPromptAndCompletion() throws {
        let tokenizer = try DataFixtures.chatTokenizer()
        let formatter = try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 2)
        let plain = try formatter.example(json: #"{"prompt": "The sky is", "completion": " blue."}"#)
        XCTAssertEqual(try tokenizer.decodeText(plain.tokens), "The sky is blue.<|im_end|>")
        XCTAssertEqual(try DataFixtures.trainedRuns(plain, tokenizer), [" blue.<|im_end|>"])
        // A completion that ends with the end-of-sequence token already gets no second one.
        let ended = try formatter.example(json: #"{"prompt": "The sky is", "completion": " blue.<|im_end|>"}"#)
        XCTAssertEqual(ended.tokens, plain.tokens)
        XCTAssertEqual(ended.trained, plain.trained)
        let chat = try formatter.example(json: #"{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}]}"#)
        XCTAssertEqual(try DataFixtures.trainedRuns(chat, tokenizer), ["Yo<|im_end|>\n"])
    }

    /// A prompt that ends with the assistant's message is that message to be continued (TRL's
    /// `continue_final_message`): its turn is left open, not closed and a new one opened. One that ends with another
    /// role than the user's or the assistant's is refused, as TRL refuses it.
    func testAPromptEndingWithTheAssistantIsContinued() throws {
        let tokenizer = try DataFixtures.chatTokenizer()
        let formatter = try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 2)
        let task = try formatter.taskPrompt(json: #"{"prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "Let me think"}]}"#)
        XCTAssertEqual(try tokenizer.decodeText(task.tokens), "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nLet me think")
        let asked = try formatter.taskPrompt(json: #"{"prompt": [{"role": "user", "content": "Q"}]}"#)
        XCTAssertEqual(try tokenizer.decodeText(asked.tokens), "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
        // A completion of such a prompt is trained from where the prompt stops.
        let continued = try formatter.example(json: #"{"prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "It is"}], "completion": [{"role": "assistant", "content": "4"}]}"#)
        XCTAssertEqual(try DataFixtures.trainedRuns(continued, tokenizer), ["<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"])
        XCTAssertThrowsError(try formatter.taskPrompt(json: #"{"prompt": [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"}]}"#)) {
            XCTAssertEqual("\($0)", "the prompt's last message is from \"system\": a prompt ends with the user's turn (or a tool's result), or with the assistant's to be continued")
        }
        // A prompt of no message (the public API takes any list) is refused, not a trap.
        let reply = JinjaValue.dictionary(JinjaDictionary([("role", .string("assistant")), ("content", .string("4"))]))
        XCTAssertThrowsError(try formatter.example(prompt: [], completion: [reply])) { XCTAssertEqual("\($0)", "the prompt holds no message") }
        // A tool's result asks for the assistant's turn, as the user's does.
        let tool = try formatter.taskPrompt(json: #"{"prompt": [{"role": "user", "content": "Q"}, {"role": "tool", "content": "42"}]}"#)
        XCTAssertTrue(try tokenizer.decodeText(tool.tokens).hasSuffix("<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n"))
        // The reward model reads the continued reply as one message: the prompt's start of it and the completion, as TRL
        // scores it; a verifiable reward sees the same text (`reply`).
        XCTAssertEqual(task.reply, "Let me think")
        XCTAssertEqual(try tokenizer.decodeText(try formatter.rewardExample(task, completion: ": 4").tokens),
                       "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nLet me think: 4<|im_end|>\n")
    }

    /// A line's top-level "tools" reach the template (TRL passes them to `apply_chat_template`), so that a model
    /// trained to call tools is shown their descriptions; "tools" that are no list are refused.
    func testToolsReachTheTemplate() throws {
        let tokenizer = try DataFixtures.chatTokenizer()
        let template = "{% if tools %}[{{ tools | map(attribute='name') | join(',') }}]{% endif %}{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
        let formatter = try SupervisedFormatter(template: template, tokenizer: tokenizer, endOfSequence: 2)
        let line = #"{"tools": [{"name": "clock"}, {"name": "map"}], "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}"#
        XCTAssertEqual(try tokenizer.decodeText(try formatter.example(json: line).tokens), "[clock,map]user:Hi;assistant:Yo;")
        let task = try formatter.taskPrompt(json: #"{"tools": [{"name": "clock"}], "prompt": [{"role": "user", "content": "Hi"}], "answer": "1"}"#)
        XCTAssertEqual(try tokenizer.decodeText(task.tokens), "[clock]user:Hi;assistant:")
        XCTAssertEqual(try tokenizer.decodeText(try formatter.rewardExample(task, completion: "1").tokens), "[clock]user:Hi;assistant:1;")
        let pair = try formatter.pair(json: #"{"tools": [{"name": "map"}], "prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "A"}], "rejected": [{"role": "assistant", "content": "B"}]}"#)
        XCTAssertEqual(try tokenizer.decodeText(pair.chosen.tokens), "[map]user:Hi;assistant:A;")
        XCTAssertThrowsError(try formatter.example(json: #"{"tools": "clock", "messages": [{"role": "user", "content": "Hi"}]}"#)) {
            XCTAssertEqual("\($0)", "\"tools\" must be a list of tool descriptions")
        }
    }

    /// A line's "chat_template_kwargs" are the template's variables for that conversation (TRL passes them to
    /// `apply_chat_template`: Qwen 3's `enable_thinking`), in SFT examples, preference pairs and GRPO tasks and their
    /// scoring; ones that are no object are refused. Without them the template saw no `enable_thinking`.
    func testChatTemplateArgumentsReachTheTemplate() throws {
        let tokenizer = try DataFixtures.chatTokenizer()
        let quietTurn = "{% if enable_thinking is defined and not enable_thinking %}<nothink>{% endif %}"
        let template = "{% for m in messages %}{{ m.role }}:{% if m.role == 'assistant' %}" + quietTurn + "{% endif %}{{ m.content }};{% endfor %}"
            + "{% if add_generation_prompt %}assistant:" + quietTurn + "{% endif %}"
        let formatter = try SupervisedFormatter(template: template, tokenizer: tokenizer, endOfSequence: 2)
        let quiet = #""chat_template_kwargs": {"enable_thinking": false}"#
        let example = try formatter.example(json: "{\(quiet), \"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Yo\"}]}")
        XCTAssertEqual(try tokenizer.decodeText(example.tokens), "user:Hi;assistant:<nothink>Yo;")
        let task = try formatter.taskPrompt(json: "{\(quiet), \"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}]}")
        XCTAssertEqual(try tokenizer.decodeText(task.tokens), "user:Hi;assistant:<nothink>")
        XCTAssertEqual(try tokenizer.decodeText(try formatter.rewardExample(task, completion: "1").tokens), "user:Hi;assistant:<nothink>1;")
        let thinking = try formatter.taskPrompt(json: #"{"prompt": [{"role": "user", "content": "Hi"}]}"#)
        XCTAssertEqual(try tokenizer.decodeText(thinking.tokens), "user:Hi;assistant:")
        let pair = try formatter.pair(json: "{\(quiet), \"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"A\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"B\"}]}")
        XCTAssertEqual(try tokenizer.decodeText(pair.chosen.tokens), "user:Hi;assistant:<nothink>A;")
        XCTAssertThrowsError(try formatter.example(json: #"{"chat_template_kwargs": [1], "messages": [{"role": "user", "content": "Hi"}]}"#)) {
            XCTAssertEqual("\($0)", "\"chat_template_kwargs\" must be an object of the chat template's variables")
        }
    }

    func testBadExamplesAreNamed() throws {
        let formatter = try SupervisedFormatter(template: nil, tokenizer: try DataFixtures.chatTokenizer(), endOfSequence: 2)
        for (line, message) in [
            (#"[1]"#, "an example must be a JSON object with \"messages\", or \"prompt\" and \"completion\""),
            (#"{"text": "x"}"#, "an example needs \"messages\", or \"prompt\" and \"completion\" (it has \"text\")"),
            (#"{"messages": []}"#, "\"messages\" must be a non-empty list of messages"),
            (#"{"messages": [{"content": "x"}]}"#, "\"messages\" message 1 is not an object with a string \"role\""),
            (#"{"prompt": "a", "completion": [{"role": "assistant", "content": "b"}]}"#,
             "\"prompt\" and \"completion\" must both be strings or both be lists of messages"),
            (#"{"messages": [{"role": "user", "content": "x"}"#, "JSON: unexpected end at byte 46"),
            // ShareGPT's roles: nothing to train on (a file of them was refused as cut before the assistant writes).
            (#"{"messages": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello"}]}"#,
             "the conversation has no \"assistant\" message to train on (its roles: \"human\", \"gpt\"); name the model's turns \"assistant\" and the person's \"user\""),
        ] {
            XCTAssertThrowsError(try formatter.example(json: line), line) { XCTAssertEqual("\($0)", message, line) }
        }
    }
}

/// Packing: whole examples into windows, best fit longest first; targets only where the loss counts them, within an
/// example; each position's document start.
final class SupervisedWindowsTests: XCTestCase {
    /// An example of `size` tokens numbered from `first`, trained from position `from` on.
    private func example(_ first: Int32, size: Int, from: Int) -> SupervisedExample {
        SupervisedExample(tokens: (0..<size).map { first + Int32($0) }, trained: (0..<size).map { $0 >= from })
    }

    private func window(_ windows: SupervisedWindows, _ index: Int) -> (inputs: [Int32], targets: [Int32], documents: [Int32]) {
        var inputs = [Int32](repeating: 0, count: windows.length), targets = inputs, documents = inputs
        windows.fill(index, inputs: &inputs, targets: &targets, documents: &documents)
        return (inputs, targets, documents)
    }

    func testExamplesArePackedWholeBestFitLongestFirst() {
        let ignored = SupervisedWindows.ignoredTarget
        // Capacity 8 (length 7): 6 + 2 and 5 + 3, not 6, 5, 3 + 2 in order.
        let examples = [example(100, size: 6, from: 2), example(200, size: 5, from: 0), example(300, size: 3, from: 1),
                        example(400, size: 2, from: 1)]
        let windows = SupervisedWindows(examples: examples, length: 7, padding: 0)
        XCTAssertEqual(windows.count, 2)
        XCTAssertEqual(windows.truncated, 0)
        let first = window(windows, 0), second = window(windows, 1)
        XCTAssertEqual(first.inputs, [100, 101, 102, 103, 104, 105, 400])
        // Targets: 102…105 (trained from position 2), none across the edge, 401 (the last position's target).
        XCTAssertEqual(first.targets, [ignored, 102, 103, 104, 105, ignored, 401])
        XCTAssertEqual(first.documents, [0, 0, 0, 0, 0, 0, 6])
        XCTAssertEqual(second.inputs, [200, 201, 202, 203, 204, 300, 301])
        XCTAssertEqual(second.targets, [201, 202, 203, 204, ignored, 301, 302])
        XCTAssertEqual(second.documents, [0, 0, 0, 0, 0, 5, 5])
        XCTAssertEqual(windows.trainedTargets, 4 + 1 + 4 + 2)
    }

    func testLongExamplesAreCutAndPaddingIsIgnored() {
        let ignored = SupervisedWindows.ignoredTarget
        let windows = SupervisedWindows(examples: [example(10, size: 12, from: 0), example(50, size: 2, from: 1)], length: 4,
                                        padding: 7)
        XCTAssertEqual(windows.count, 2)
        XCTAssertEqual(windows.truncated, 1)
        XCTAssertEqual(window(windows, 0).inputs, [10, 11, 12, 13])
        XCTAssertEqual(window(windows, 0).targets, [11, 12, 13, 14])
        // Two tokens, then padding: each padding position its own document, never a target.
        let padded = window(windows, 1)
        XCTAssertEqual(padded.inputs, [50, 51, 7, 7])
        XCTAssertEqual(padded.targets, [51, ignored, ignored, ignored])
        XCTAssertEqual(padded.documents, [0, 0, 2, 3])
    }
}
