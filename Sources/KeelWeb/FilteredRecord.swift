import KeelData

/// A JSON record put through a `QualityFilter`: its fate and the line to write. The line is the record as read —
/// other fields untouched — with the text `c4_quality` left and `"language"`/`"language_score"` for a kept
/// document, or with `"filter"` and `"filter_reason"` added for a removed one.
public struct FilteredRecord: Sendable {
    /// The rule set that removed the document and why; nil when kept.
    public let fate: (rule: String, reason: String)?
    /// The record to write, without a newline.
    public let line: [UInt8]
    /// UTF-8 bytes of the kept text (0 when removed).
    public let keptBytes: Int
    /// The kept text (empty when removed).
    public let keptText: String

    /// Judges the record `line`, whose `text` value (quotes included) lies at `textValue` and decodes to `text`.
    public init(line: [UInt8], text: String, textValue: Range<Int>, filter: QualityFilter) {
        let document = FilterDocument(text: text)
        let fate = filter.apply(document)
        var output = line
        if let fate {
            JSONFields.add([("filter", .string(fate.rule)), ("filter_reason", .string(fate.reason))], to: &output)
        } else {
            if document.text != text {
                output = Array(line[..<textValue.lowerBound]) + JSONString.quoted(document.text) + line[textValue.upperBound...]
            }
            if let language = document.language {
                JSONFields.add([("language", .string(language.code)), ("language_score", .number(language.probability))], to: &output)
            }
        }
        self.fate = fate
        self.line = output
        keptBytes = fate == nil ? document.text.utf8.count : 0
        keptText = fate == nil ? document.text : ""
    }
}
