import KeelCore

/// The published rule sets applied in order; the first that removes a document names its fate. Each rule's
/// thresholds default to datatrove 0.10's and are set by name (`gopher_quality.min_doc_words=100`).
public struct QualityFilter: Sendable {
    /// The rule sets Keel has, in the order FineWeb's pipeline runs them.
    public static let ruleNames = ["language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]

    public private(set) var rules: [any QualityRule]

    /// `names`: rule sets from `ruleNames`, applied in the order given.
    public init(rules names: [String] = QualityFilter.ruleNames) throws {
        rules = try names.map { name in
            switch name {
            case "language": LanguageRule()
            case "gopher_repetition": GopherRepetitionRule()
            case "gopher_quality": GopherQualityRule()
            case "c4_quality": C4QualityRule()
            case "fineweb_quality": FineWebQualityRule()
            default:
                throw KeelError("no filter rule set named \"\(name)\"; there are \(Self.ruleNames.joined(separator: ", "))")
            }
        }
        guard !rules.isEmpty else { throw KeelError("no filter rule sets chosen") }
    }

    /// Applies `rule.parameter=value`; the rule set must be one of those chosen.
    public mutating func set(_ assignment: String) throws {
        guard let equals = assignment.firstIndex(of: "="), let dot = assignment[..<equals].firstIndex(of: ".") else {
            throw KeelError("--set \(assignment): expected rule.parameter=value (for example gopher_quality.min_doc_words=100)")
        }
        let rule = String(assignment[..<dot])
        guard let index = rules.firstIndex(where: { $0.name == rule }) else {
            throw KeelError("--set \(assignment): the rule set \"\(rule)\" is not among those chosen "
                + "(\(rules.map(\.name).joined(separator: ", ")))")
        }
        try rules[index].set(String(assignment[assignment.index(after: dot)..<equals]),
                             to: String(assignment[assignment.index(after: equals)...]))
    }

    /// Loads what the chosen rules need (the language model); call after the last `set`.
    public mutating func prepare() throws {
        for index in rules.indices { try rules[index].prepare() }
    }

    /// The first rule that removes `document` and its reason, or nil when every rule keeps it (C4 may have
    /// dropped some of its lines).
    public func apply(_ document: FilterDocument) -> (rule: String, reason: String)? {
        for rule in rules {
            if let reason = rule.check(document) { return (rule.name, reason) }
        }
        return nil
    }
}

/// What filtering did: documents and bytes in, kept, and removed by each rule set and reason.
public struct FilterReport: Codable, Sendable {
    public struct Removal: Codable, Sendable {
        public var documents = 0
        public var bytes = 0
    }

    public var documents = 0
    public var bytes = 0
    public var keptDocuments = 0
    public var keptBytes = 0
    /// Removed by rule set, then by reason.
    public var removed: [String: [String: Removal]] = [:]

    public init() {}

    public mutating func count(bytes documentBytes: Int, removedBy fate: (rule: String, reason: String)?, keptBytes kept: Int) {
        documents += 1
        bytes += documentBytes
        if let fate {
            removed[fate.rule, default: [:]][fate.reason, default: Removal()].documents += 1
            removed[fate.rule, default: [:]][fate.reason, default: Removal()].bytes += documentBytes
        } else {
            keptDocuments += 1
            keptBytes += kept
        }
    }

    /// The per-rule table as Markdown: each rule set, then each reason, with documents and bytes removed.
    public func table(order: [String]) -> String {
        func percent(_ part: Int, _ whole: Int) -> String { whole == 0 ? "0.0%" : String(format: "%.1f%%", 100 * Double(part) / Double(whole)) }
        var lines = ["| rule | reason | documents | bytes |", "| --- | --- | ---: | ---: |"]
        for rule in order {
            let reasons = removed[rule] ?? [:]
            let total = reasons.values.reduce(Removal()) { Removal(documents: $0.documents + $1.documents, bytes: $0.bytes + $1.bytes) }
            lines.append("| \(rule) | (all) | \(total.documents) (\(percent(total.documents, documents))) | \(total.bytes) (\(percent(total.bytes, bytes))) |")
            for (reason, removal) in reasons.sorted(by: { ($0.value.documents, $1.key) > ($1.value.documents, $0.key) }) {
                lines.append("| | \(reason) | \(removal.documents) | \(removal.bytes) |")
            }
        }
        lines.append("| kept | | \(keptDocuments) (\(percent(keptDocuments, documents))) | \(keptBytes) (\(percent(keptBytes, bytes))) |")
        return lines.joined(separator: "\n")
    }
}
