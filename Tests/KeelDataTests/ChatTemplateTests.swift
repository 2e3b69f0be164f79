import Foundation
import KeelData
import XCTest

/// Chat templates rendered by Keel's Jinja engine against jinja2 set up as `transformers` sets it up
/// (Tests/Reference/render_chat_template.py): real models' templates (Tests/Reference/chat_templates, README there)
/// and Keel's own template of the constructs they use, on conversations with system prompts, tool calls, Unicode,
/// reasoning and a role order some templates refuse.
final class ChatTemplateTests: XCTestCase {
    private static let directory = DataFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/chat_templates")
    /// The time strftime_now gives in the reference script.
    private static let now = DateComponents(calendar: Calendar(identifier: .gregorian), timeZone: TimeZone(identifier: "UTC"),
                                            year: 2026, month: 12, day: 5, hour: 9, minute: 7, second: 3).date!

    func testTemplatesRenderAsJinja2Does() throws {
        let cases = try JinjaValue(json: String(contentsOf: Self.directory.appendingPathComponent("cases.json"), encoding: .utf8))
        guard case .list(let conversations) = cases else { return XCTFail("cases.json is not a list") }
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { $0.hasSuffix(".jinja") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 9)
        // And Keel's own ChatML, which supervised fine-tuning uses for a model without a template.
        let chatML = FileManager.default.temporaryDirectory.appendingPathComponent("keel-chatml-\(UUID()).jinja")
        try SupervisedFormatter.chatML.write(to: chatML, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: chatML) }
        var generated = 0, errors = 0
        for name in names + [chatML.path] {
            let path = name.hasPrefix("/") ? name : Self.directory.appendingPathComponent(name).path
            let expected = try JinjaValue(json: DataFixtures.python([
                DataFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/render_chat_template.py").path, path,
                Self.directory.appendingPathComponent("cases.json").path,
            ]))
            guard case .list(let results) = expected, results.count == conversations.count else {
                return XCTFail("\(name): the reference gave no list of \(conversations.count) results")
            }
            let template = try ChatTemplate(String(contentsOfFile: path, encoding: .utf8))
            for (index, (conversation, result)) in zip(conversations, results).enumerated() {
                guard case .dictionary(let fields) = conversation, case .list(let messages)? = fields["messages"],
                      case .dictionary(let variables)? = fields["variables"], case .dictionary(let reference) = result else {
                    return XCTFail("case \(index) is malformed")
                }
                var tools: [JinjaValue]?
                if case .list(let list)? = fields["tools"] { tools = list }
                let label = "\(name), case \(index)"
                do {
                    let rendering = try template.render(messages: messages, addGenerationPrompt: fields["add_generation_prompt"]?.isTrue ?? false,
                                                        tools: tools, variables: variables, now: Self.now,
                                                        timeZone: TimeZone(identifier: "UTC")!)
                    guard case .string(let text)? = reference["text"], case .list(let spans)? = reference["generated"] else {
                        XCTFail("\(label): Keel rendered, jinja2 raised \(reference["error"]?.text ?? "?")")
                        continue
                    }
                    XCTAssertEqual(rendering.text, text, label)
                    XCTAssertEqual(rendering.generated.map { [$0.lowerBound, $0.upperBound] },
                                   spans.map { span -> [Int] in
                                       guard case .list(let bounds) = span else { return [] }
                                       return bounds.compactMap { if case .int(let value) = $0 { value } else { nil } }
                                   }, label)
                    generated += rendering.generated.count
                } catch {
                    guard case .string(let message)? = reference["error"] else {
                        XCTFail("\(label): jinja2 rendered, Keel raised \(error)")
                        continue
                    }
                    XCTAssertEqual("\(error)", message, label)
                    errors += 1
                }
            }
        }
        // The comparison covered generation spans and templates' own errors, not only text.
        XCTAssertGreaterThan(generated, 0)
        XCTAssertGreaterThan(errors, 0)
    }

    /// A rendered template's special-token spellings become those tokens (the longer where two start at one place);
    /// the text between them is encoded as text.
    func testRenderedTextReadsSpecialTokensAsTokens() throws {
        let characters = (0..<256).map { String(TokenizerFiles.byteToCharacter[$0]) }
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im"]
        let tokens = specials + characters
        let tokenizer = try GGUFVocabulary(tokens: tokens, types: [3, 3, 3, 3] + Array(repeating: 1, count: 256), merges: [],
                                           preTokenizer: "gpt-2", endOfText: 0).tokenizer()
        let byte = { (text: String) in text.utf8.map { Int32(4 + Int($0)) } }
        XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens("<|im_start|>user\nhi<|im_end|>\n"),
                       [1] + byte("user\nhi") + [2] + byte("\n"))
        XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens("a<|im"), byte("a") + [3])
        XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens("plain"), byte("plain"))
        XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens("<|im<|im_end|>x<|im_en"), [3, 2] + byte("x") + [3] + byte("_en"))
        // A text made of spellings (a request's message, say) is read whole, each spelling once.
        XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens(String(repeating: "<|im_end|>é", count: 2000)),
                       Array(repeating: [2] + byte("é"), count: 2000).flatMap { $0 })
        XCTAssertEqual(tokenizer.encode("<|im_end|>"), byte("<|im_end|>"), "plain encoding keeps special text as text")
    }

    /// Surrogate escapes as scraped data holds them: a pair is one character; a high surrogate followed by another
    /// escape is U+FFFD, and that escape is read on its own (it used to trap, subtracting below zero).
    func testSurrogateEscapesInJSON() throws {
        XCTAssertEqual(try JinjaValue(json: #"["x\ud83d\ude00y"]"#), .list([.string("x😀y")]))
        XCTAssertEqual(try JinjaValue(json: #"["x\ud83d\u0041y"]"#), .list([.string("x\u{FFFD}Ay")]))
    }

    /// Line ends as jinja2 reads them: "\r\n" and "\r" are "\n" (in strings too), and the last one goes.
    func testWindowsLineEndingsReadAsJinja2ReadsThem() throws {
        let rendering = try ChatTemplate("a\r\nb{{ 'c\r\nd' }}\re\r\n").render(messages: [], addGenerationPrompt: false)
        XCTAssertEqual(rendering.text, "a\nbc\nd\ne")
    }

    /// A template Keel cannot run says what and where, instead of rendering something else.
    func testTemplatesKeelCannotRunFailWithAReason() {
        XCTAssertThrowsError(try ChatTemplate("line one\n{% for m in messages %}{{ m }}")) {
            XCTAssertEqual("\($0)", "line 2: {% for %} is not closed")
        }
        XCTAssertThrowsError(try ChatTemplate("{{ 'a' | nosuchfilter }}").render(messages: [], addGenerationPrompt: false)) {
            XCTAssertEqual("\($0)", "no filter named 'nosuchfilter'")
        }
        XCTAssertThrowsError(try ChatTemplate("\n\n{% unknown %}")) {
            XCTAssertEqual("\($0)", "line 3: unknown statement {% unknown %}")
        }
        XCTAssertThrowsError(try ChatTemplate("{{ messages[0].content.missing }}").render(messages: [], addGenerationPrompt: false)) {
            XCTAssertEqual("\($0)", "'[0]' is undefined")
        }
        XCTAssertThrowsError(try ChatTemplate("{{ 'unclosed }}")) {
            XCTAssertEqual("\($0)", "line 1: a string is not closed")
        }
        // What stopped the process before: a template ending inside a raw block's tag, and integers past 64 bits
        // (Python's have any size; Keel says where it cannot follow).
        XCTAssertThrowsError(try ChatTemplate("{% raw %}x{%")) { XCTAssertEqual("\($0)", "line 1: {% raw %} is not closed") }
        for (expression, message) in [("2 ** 64", "integer overflow in **: the result does not fit 64 bits"),
                                      ("9223372036854775807 + 1", "integer overflow in +: the result does not fit 64 bits"),
                                      ("(-9223372036854775807 - 1) // -1", "integer overflow in //: the result does not fit 64 bits"),
                                      ("3037000500 * 3037000500", "integer overflow in *: the result does not fit 64 bits"),
                                      ("'1e400' | int", "cannot convert inf to a 64-bit integer")] {
            XCTAssertThrowsError(try ChatTemplate("{{ \(expression) }}").render(messages: [], addGenerationPrompt: false), expression) {
                XCTAssertEqual("\($0)", message)
            }
        }
    }
}
