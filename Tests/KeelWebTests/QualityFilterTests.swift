import KeelCore
@testable import KeelWeb
import XCTest

/// Keel's tokenizer and rules against spaCy's and datatrove 0.10's answers on the same texts. The expected values
/// are literals printed by Tests/Reference/quality_filter_cases.py, which builds the same documents.
final class QualityFilterTests: XCTestCase {
    private func words(_ text: String) -> [String] { FilterDocument(text: text).wordStrings }

    private func tokens(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return EnglishTokenizer.shared.tokens(scalars).map { String(String.UnicodeScalarView(scalars[$0])) }
    }

    func testTokensMatchSpaCy() {
        XCTAssertEqual(tokens("Don't stop-believing, e.g. U.S.A. 5km $3.50 (hello) http://x.com/a?b=1 it's 10:30pm..."), [
            "Do", "n't", "stop", "-", "believing", ",", "e.g.", "U.S.A.", "5", "km", "$", "3.50", "(", "hello", ")",
            "http://x.com/a?b=1", "it", "'s", "10:30pm", "...",
        ])
        // Special cases that affix splitting cuts apart are joined again.
        XCTAssertEqual(tokens("Liebe’’ stehen alpin): Mit x:) y"), ["Liebe", "’’", "stehen", "alpin", "):", "Mit", "x", ":)", "y"])
        // White space other than one space is a token; datatrove's words leave it out.
        XCTAssertEqual(tokens("\u{FEFF}\nAppeasement  ist\tda"), ["\u{FEFF}", "\n", "Appeasement", " ", "ist", "\t", "da"])
        XCTAssertEqual(words("\u{FEFF}\nAppeasement  ist\tda"), ["\u{FEFF}", "Appeasement", "ist", "da"])
        XCTAssertEqual(tokens("a--b c—d 1+2 3-4 Hello.World Google.com 20°F."), [
            "a", "--", "b", "c", "—", "d", "1", "+", "2", "3", "-", "4", "Hello", ".", "World", "Google.com", "20", "°", "F", ".",
        ])
        XCTAssertEqual(tokens("“Quoted,” she said; (really?) [1] #tag @user 1,000,000 a/b A.B.C. 3a.m. can't cannot gonna"), [
            "“", "Quoted", ",", "”", "she", "said", ";", "(", "really", "?", ")", "[", "1", "]", "#", "tag", "@user",
            "1,000,000", "a", "/", "b", "A.B.C.", "3", "a.m.", "ca", "n't", "can", "not", "gon", "na",
        ])
    }

    func testSentenceCountsMatchSpaCysSentencizer() {
        for (line, expected) in [("Hello world. This is it! Is it? Yes...", 4), ("One sentence only", 1),
                                 ("Dr. Smith went home. He slept.", 2), ("Wait... what?! OK.", 2)] {
            XCTAssertEqual(EnglishTokenizer.shared.sentenceCount(Array(line.unicodeScalars)), expected, line)
        }
    }

    private static let good = String(repeating: "The history of the town is long and varied. ", count: 3)
        + "It was founded in the twelfth century by monks who wanted to have a place to pray and to work with their hands. "
        + "Over time, the settlement grew into a market town with a church, a mill and several inns. Today it is known for "
        + "its old bridge and the annual fair.\n"

    /// The documents of quality_filter_cases.py and datatrove's reason for each rule set (nil: kept).
    private static let cases: [(name: String, text: String, reasons: [String: String?])] = {
        let good = QualityFilterTests.good
        func repeated(_ item: String, _ count: Int, _ separator: String) -> String {
            Array(repeating: item, count: count).joined(separator: separator)
        }
        return [
            ("good", good, ["gopher_repetition": "duplicated_5_n_grams", "gopher_quality": nil, "c4_quality": nil, "fineweb_quality": nil]),
            ("short", "The cat sat on the mat with the dog.", ["gopher_repetition": "top_3_gram", "gopher_quality": "gopher_short_doc",
                                                            "c4_quality": "too_few_sentences", "fineweb_quality": nil]),
            ("hashes", good + repeated("#tag", 30, " "), ["gopher_repetition": "top_2_gram", "gopher_quality": "gopher_too_many_hashes",
                                                          "c4_quality": nil, "fineweb_quality": nil]),
            ("ellipsis", good + "\n" + repeated("and then ...", 40, "\n"), [
                "gopher_repetition": "dup_line_frac", "gopher_quality": "gopher_too_many_ellipsis", "c4_quality": nil,
                "fineweb_quality": "short_line_ratio"]),
            ("bullets", (0..<60).map { "- item number \($0) of the list that goes on and the end" }.joined(separator: "\n"), [
                "gopher_repetition": "top_3_gram", "gopher_quality": "gopher_too_many_bullets", "c4_quality": "too_few_sentences",
                "fineweb_quality": "line_punct_ratio"]),
            ("nonalpha", good + " " + repeated("12345", 60, " "), [
                "gopher_repetition": "top_2_gram", "gopher_quality": "gopher_below_alpha_threshold", "c4_quality": nil,
                "fineweb_quality": nil]),
            ("stopwords", repeated("apple banana cherry dates elder figs grape", 10, " "), [
                "gopher_repetition": "top_2_gram", "gopher_quality": "gopher_enough_stop_words", "c4_quality": "too_few_sentences",
                "fineweb_quality": "line_punct_ratio"]),
            ("dup_para", "Paragraph one is here and it is fine.\n\nParagraph one is here and it is fine.\n\nAnother one.", [
                "gopher_repetition": "dup_para_frac", "gopher_quality": "gopher_short_doc", "c4_quality": "too_few_sentences",
                "fineweb_quality": "char_dup_ratio"]),
            ("dup_lines", good + repeated("same line again", 10, "\n") + "\nend", [
                "gopher_repetition": "dup_line_frac", "gopher_quality": nil, "c4_quality": nil, "fineweb_quality": "line_punct_ratio"]),
            ("top_gram", repeated("the cat", 40, " ") + " " + good, [
                "gopher_repetition": "top_2_gram", "gopher_quality": nil, "c4_quality": nil, "fineweb_quality": nil]),
            ("c4_lorem", "Lorem ipsum dolor sit amet, consectetur.\n" + good, [
                "gopher_repetition": "duplicated_5_n_grams", "gopher_quality": nil, "c4_quality": "lorem_ipsum", "fineweb_quality": nil]),
            ("c4_curly", good + "function x() { return 1; }.", [
                "gopher_repetition": "duplicated_5_n_grams", "gopher_quality": nil, "c4_quality": "curly_bracket", "fineweb_quality": nil]),
            ("c4_few", "This is one. This is two.\nShort line\nNo punctuation here at all", [
                "gopher_repetition": "top_2_gram", "gopher_quality": "gopher_short_doc", "c4_quality": "too_few_sentences",
                "fineweb_quality": "short_line_ratio"]),
            ("fw_punct", (0..<20).map { "line without ending \($0) words words" }.joined(separator: "\n") + "\nOne ends.", [
                "gopher_repetition": "top_2_gram", "gopher_quality": "gopher_enough_stop_words", "c4_quality": "too_few_sentences",
                "fineweb_quality": "line_punct_ratio"]),
            ("fw_short", repeated("Short one.", 10, "\n") + "\n" + good, [
                "gopher_repetition": "dup_line_frac", "gopher_quality": nil, "c4_quality": nil, "fineweb_quality": "short_line_ratio"]),
            ("fw_list", (0..<30).map { "Item \($0) is a thing." }.joined(separator: "\n"), [
                "gopher_repetition": "top_2_gram", "gopher_quality": "gopher_below_avg_threshold", "c4_quality": nil,
                "fineweb_quality": "short_line_ratio"]),
        ]
    }()

    func testEachRuleSetDecidesAsDatatrove() throws {
        let filter = try QualityFilter(rules: ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"])
        for (name, text, reasons) in Self.cases {
            for rule in filter.rules {
                XCTAssertEqual(rule.check(FilterDocument(text: text)), reasons[rule.name]!, "\(name): \(rule.name)")
            }
        }
    }

    func testC4KeepsOnlyTheLinesItsRulesAllow() {
        let document = FilterDocument(text: "Menu Home About\n" + Self.good + "Please enable JavaScript to view this page.\n"
            + "We use cookies to improve your experience, see our privacy policy.\nCopyright 2024 [1] all rights reserved.\n"
            + "The end is near [12]. Is it not?\n")
        XCTAssertNil(C4QualityRule().check(document))
        // Citations go, and a line that ends in one no longer ends in punctuation (datatrove's order of rules).
        XCTAssertEqual(document.text, Self.good.trimmingCharacters(in: .newlines) + "\nCopyright 2024  all rights reserved.\nThe end is near . Is it not?")
    }

    func testTheFirstRuleThatRemovesNamesTheFate() throws {
        var filter = try QualityFilter(rules: ["gopher_quality", "c4_quality"])
        let fate = filter.apply(FilterDocument(text: "The cat sat on the mat with the dog."))
        XCTAssertEqual(fate?.rule, "gopher_quality")
        XCTAssertEqual(fate?.reason, "gopher_short_doc")
        // A threshold turned off lets it through to the next rule set.
        try filter.set("gopher_quality.min_doc_words=0")
        XCTAssertEqual(filter.apply(FilterDocument(text: "The cat sat on the mat with the dog."))?.reason, "too_few_sentences")
        try filter.set("c4_quality.min_num_sentences=-1")
        XCTAssertNil(filter.apply(FilterDocument(text: "The cat sat on the mat with the dog.")))
    }

    func testBadSettingsAreNamed() throws {
        var filter = try QualityFilter(rules: ["gopher_quality"])
        XCTAssertThrowsError(try QualityFilter(rules: ["gopher"])) { XCTAssertTrue("\($0)".contains("no filter rule set named \"gopher\"")) }
        XCTAssertThrowsError(try filter.set("gopher_quality.min_words=3")) { XCTAssertTrue("\($0)".contains("has no parameter \"min_words\"")) }
        XCTAssertThrowsError(try filter.set("gopher_quality.min_doc_words=many")) { XCTAssertTrue("\($0)".contains("is not a number")) }
        XCTAssertThrowsError(try filter.set("c4_quality.filter_policy=false")) { XCTAssertTrue("\($0)".contains("not among those chosen")) }
        XCTAssertThrowsError(try filter.set("min_doc_words")) { XCTAssertTrue("\($0)".contains("expected rule.parameter=value")) }
        // Lengths beyond any count are an error, not a trap converting them.
        var all = try QualityFilter(rules: ["c4_quality", "fineweb_quality"])
        XCTAssertThrowsError(try all.set("c4_quality.max_word_length=1e19")) {
            XCTAssertEqual("\($0)", "c4_quality.max_word_length: \"1e19\" is not a whole number of at most 2147483647 (or none)")
        }
        XCTAssertThrowsError(try all.set("fineweb_quality.short_line_length=2.5")) { XCTAssertTrue("\($0)".contains("not a whole number")) }
    }

    func testPythonLineSplittingAndSpaces() {
        let text = Array("a\r\nb\u{2028}c\u{1C}d\n".unicodeScalars)
        XCTAssertEqual(PythonText.lines(text).map { String(String.UnicodeScalarView(text[$0])) }, ["a", "b", "c", "d"])
        XCTAssertTrue(PythonText.isSpace("\u{1F}"))
        XCTAssertFalse(PythonText.isSpace("\u{FEFF}"))
        XCTAssertFalse(PythonText.isSpace("\u{200B}"))
    }
}
