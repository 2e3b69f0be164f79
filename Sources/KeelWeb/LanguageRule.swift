import Foundation
import KeelCore

/// Keeps documents in the wanted languages, as datatrove's `LanguageFilter` does with fastText's model — here
/// with py3langid's, the one that installs offline: a document stays when one wanted language's probability
/// exceeds the threshold. Every judged document's most likely language and its probability are recorded.
public struct LanguageRule: QualityRule {
    public let name = "language"
    /// Wanted languages (ISO 639-1, as py3langid names them); nil keeps any language identified confidently.
    public var languages: Set<String>? = ["en"]
    public var threshold = 0.65
    /// py3langid's `model.npz.xz`: `KEEL_LANGID_MODEL`, else data/langid/model.npz.xz under the working
    /// directory (where scripts/fetch_web_fixtures.sh puts it).
    public var modelPath = ProcessInfo.processInfo.environment["KEEL_LANGID_MODEL"] ?? "data/langid/model.npz.xz"
    private var identifier: LanguageIdentifier?

    public init() {}

    public mutating func prepare() throws {
        guard FileManager.default.fileExists(atPath: modelPath) else {
            throw KeelError("language: no language model at \(modelPath); get py3langid's (scripts/fetch_web_fixtures.sh puts it in "
                + "data/langid/), point language.model or KEEL_LANGID_MODEL at it, or leave \"language\" out of --rules")
        }
        let identifier = try LanguageIdentifier(modelPath: modelPath)
        if let unknown = languages?.subtracting(identifier.languages).sorted(), !unknown.isEmpty {
            throw KeelError("language: the model has no language \(unknown.joined(separator: ", ")); it has \(Set(identifier.languages).sorted().joined(separator: " "))")
        }
        self.identifier = identifier
    }

    public func check(_ document: FilterDocument) -> String? {
        guard let identifier else { preconditionFailure("LanguageRule.prepare() was not called") }
        // Scored once; the best language and every wanted one are read from the same scores.
        let scores = identifier.probabilities(document.text)
        let best = identifier.best(in: scores)
        document.language = (best.language, best.probability)
        guard let languages else { return best.probability > threshold ? nil : "language" }
        let wanted = languages.map { identifier.probability(of: $0, in: scores) }.max() ?? 0
        return wanted > threshold ? nil : "language"
    }

    public mutating func set(_ parameter: String, to value: String) throws {
        switch parameter {
        case "languages":
            let codes = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            languages = codes.isEmpty || codes == ["all"] ? nil : Set(codes)
        case "language_threshold":
            guard let number = Double(value), (0...1).contains(number) else {
                throw KeelError("language.language_threshold: \"\(value)\" is not a probability between 0 and 1")
            }
            threshold = number
        case "model": modelPath = value
        default: throw Self.unknown(parameter, in: name, known: ["languages", "language_threshold", "model"])
        }
    }
}
