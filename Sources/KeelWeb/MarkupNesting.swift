/// How deeply a page's elements nest, estimated from its tags before it is parsed: MyHTML's tree building looks
/// through the stack of open elements for each new one, so a page nested a hundred thousand deep (`<div>` repeated,
/// broken or hostile markup) takes minutes to parse — 1 MB of it about a minute — only for its text to be refused as
/// too deep (`ContentExtractor.maximumDepth`). A page this estimate finds too deep is refused before parsing.
///
/// The estimate follows what a parser does with the tags that decide depth: an element opens on its start tag and
/// closes, with every element opened inside it, on its end tag; an end tag that closes nothing is ignored. Elements
/// that hold nothing (`<br>`, `<img>`) and those whose end tag may be left out because what follows implies it (`<p>`,
/// `<li>`, table cells and rows) are not counted, since left open they do not deepen the tree; comments and the
/// text of `<script>`, `<style>` and their kind hold no tags.
public enum MarkupNesting {
    /// Elements that never hold others, or whose end may be implied: counted, they would make a page of unclosed `<p>`s
    /// look deep.
    static let uncounted: Set<[UInt8]> = Set([
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "param",
        "keygen", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "colgroup",
        "caption", "rb", "rt", "rtc", "rp", "html", "head", "body",
    ].map { Array($0.utf8) })
    /// Elements whose content is text up to their end tag.
    static let rawText: Set<[UInt8]> = Set(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
                                            "noscript"].map { Array($0.utf8) })

    /// Whether `html`'s elements nest more than `limit` deep by this estimate.
    public static func exceeds(_ limit: Int, in html: String) -> Bool {
        var html = html
        return html.withUTF8 { exceeds(limit, in: $0) }
    }

    private static func exceeds(_ limit: Int, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var open: [[UInt8]] = []
        var index = 0
        let count = bytes.count
        while let start = find(UInt8(ascii: "<"), in: bytes, from: index) {
            index = start + 1
            if matches("!--", bytes, at: index) {
                index = find("-->", in: bytes, from: index + 3).map { $0 + 3 } ?? count
                continue
            }
            let closing = index < count && bytes[index] == UInt8(ascii: "/")
            var end = closing ? index + 1 : index
            let nameStart = end
            while end < count, isNameByte(bytes[end]) { end += 1 }
            guard end > nameStart, isLetter(bytes[nameStart]) else { continue }
            let name = bytes[nameStart..<end].map { $0 | 0x20 }  // ASCII lower case
            // The tag ends at the first '>' outside quotes.
            var quote: UInt8?
            while end < count, quote != nil || bytes[end] != UInt8(ascii: ">") {
                if let open = quote { if bytes[end] == open { quote = nil } } else if bytes[end] == 0x22 || bytes[end] == 0x27 { quote = bytes[end] }
                end += 1
            }
            let selfClosing = end > 0 && end < count && bytes[end - 1] == UInt8(ascii: "/")
            index = end + 1
            if closing {
                if let last = open.lastIndex(of: name) { open.removeSubrange(last...) }
            } else if rawText.contains(name) {
                index = findEndTag(name, in: bytes, from: index) ?? count
            } else if !uncounted.contains(name), !selfClosing {
                open.append(name)
                if open.count > limit { return true }
            }
        }
        return false
    }

    private static func isLetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        isLetter(byte) || (byte >= 0x30 && byte <= 0x39) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ":")
    }

    private static func matches(_ text: String, _ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Bool {
        let pattern = Array(text.utf8)
        return index + pattern.count <= bytes.count && bytes[index..<(index + pattern.count)].elementsEqual(pattern)
    }

    private static func find(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int? {
        guard index < bytes.count else { return nil }
        return bytes[index...].firstIndex(of: byte)
    }

    private static func find(_ text: String, in bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int? {
        var at = index
        while let candidate = find(text.utf8.first!, in: bytes, from: at) {
            if matches(text, bytes, at: candidate) { return candidate }
            at = candidate + 1
        }
        return nil
    }

    /// Where the end tag of `name` (any case) begins, from `index` on.
    private static func findEndTag(_ name: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int? {
        var at = index
        while let candidate = find("</", in: bytes, from: at) {
            let start = candidate + 2
            if start + name.count <= bytes.count, bytes[start..<(start + name.count)].map({ $0 | 0x20 }) == name,
               start + name.count == bytes.count || !isNameByte(bytes[start + name.count]) {
                return candidate
            }
            at = candidate + 2
        }
        return nil
    }
}
