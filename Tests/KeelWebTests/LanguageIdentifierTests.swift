import Foundation
import KeelCore
@testable import KeelWeb
import XCTest

/// py3langid's model read natively: the same language and probability as py3langid 0.4.0 (norm_probs=True) gives,
/// the literals below printed by it. The model comes from scripts/fetch_web_fixtures.sh (data/langid/).
final class LanguageIdentifierTests: XCTestCase {
    static let modelPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/langid/model.npz.xz").path

    private static let identifier: LanguageIdentifier? = try? LanguageIdentifier(modelPath: modelPath)

    private func model() throws -> LanguageIdentifier {
        guard let identifier = Self.identifier else {
            XCTFail("no language model at \(Self.modelPath): run scripts/fetch_web_fixtures.sh")
            throw KeelError("no model")
        }
        return identifier
    }

    func testLanguagesAndProbabilitiesMatchPy3langid() throws {
        let identifier = try model()
        XCTAssertEqual(identifier.languages.count, 142)
        for (text, language, probability) in [
            ("The quick brown fox jumps over the lazy dog and runs into the forest.", "en", 0.9934841990470886),
            ("Der schnelle braune Fuchs springt über den faulen Hund.", "de", 0.9800323843955994),
            ("Le renard brun rapide saute par-dessus le chien paresseux.", "fr", 0.9146525859832764),
            ("El rápido zorro marrón salta sobre el perro perezoso.", "es", 0.6187570691108704),
            // All upper case is lowered first.
            ("THE WEATHER TODAY IS SUNNY AND WARM IN THE CITY", "en", 0.9921159148216248),
            ("12345 678", "zxx", 0.12911497056484222),
            // Nothing to go on: uniform over 142 columns, the code with two of them first.
            ("", "sr", 2.0 / 142),
        ] {
            let found = identifier.identify(text)
            XCTAssertEqual(found.language, language, text)
            XCTAssertEqual(found.probability, probability, accuracy: 2e-4, text)
        }
    }

    func testLanguageRuleKeepsWantedLanguagesAndRecordsTheLanguage() throws {
        _ = try model()
        var rule = LanguageRule()
        try rule.set("model", to: Self.modelPath)
        try rule.prepare()
        let english = FilterDocument(text: "The quick brown fox jumps over the lazy dog and runs into the forest.")
        XCTAssertNil(rule.check(english))
        XCTAssertEqual(english.language?.code, "en")
        let german = FilterDocument(text: "Der schnelle braune Fuchs springt über den faulen Hund.")
        XCTAssertEqual(rule.check(german), "language")
        XCTAssertEqual(german.language?.code, "de")
        try rule.set("languages", to: "de,fr")
        XCTAssertNil(rule.check(german))
        // Spanish at 0.62 is below the default threshold of 0.65.
        try rule.set("languages", to: "es")
        XCTAssertEqual(rule.check(FilterDocument(text: "El rápido zorro marrón salta sobre el perro perezoso.")), "language")
    }

    func testMissingOrBadModelsAreNamed() throws {
        var rule = LanguageRule()
        try rule.set("model", to: "/nonexistent/model.npz.xz")
        XCTAssertThrowsError(try rule.prepare()) { XCTAssertTrue("\($0)".contains("no language model at /nonexistent/model.npz.xz")) }
        let notXZ = FileManager.default.temporaryDirectory.appendingPathComponent("keel-langid-\(getpid()).npz.xz")
        try Data("not xz at all".utf8).write(to: notXZ)
        defer { try? FileManager.default.removeItem(at: notXZ) }
        XCTAssertThrowsError(try LanguageIdentifier(modelPath: notXZ.path)) { XCTAssertTrue("\($0)".contains("not a valid xz file")) }
        _ = try model()
        try rule.set("model", to: Self.modelPath)
        try rule.set("languages", to: "en,xx")
        XCTAssertThrowsError(try rule.prepare()) { XCTAssertTrue("\($0)".contains("the model has no language xx")) }
        XCTAssertThrowsError(try rule.set("language_threshold", to: "2")) { XCTAssertTrue("\($0)".contains("between 0 and 1")) }
    }
}
