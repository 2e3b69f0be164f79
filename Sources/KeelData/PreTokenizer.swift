// TEMPORARY STUB (lead): replaced by the real pre-tokenizer from helper-3.
public enum SplitPattern: String, Sendable, CaseIterable { case gpt2, cl100k }

public struct PreTokenizer: Sendable {
    public let pattern: SplitPattern
    public init(pattern: SplitPattern) { self.pattern = pattern }
    public func split(_ text: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        var start = 0
        for i in 1..<max(text.count, 1) where text[i] == 32 {
            body(start..<i)
            start = i
        }
        if start < text.count { body(start..<text.count) }
    }
}
