/// How deeply a page's elements nest, estimated from its tags before it is parsed: MyHTML's tree building looks
/// through the stack of open elements for each new one, so a page nested a hundred thousand deep (`<div>` repeated,
/// broken or hostile markup) takes minutes to parse — 1 MB of it about a minute — only for its text to be refused as
/// too deep (`ContentExtractor.maximumDepth`). A page this estimate finds too deep is refused before parsing.
///
/// The estimate keeps a stack of open elements as an HTML parser does for the tags that decide depth: a start tag
/// opens an element and its end tag closes it with every element opened inside it (an end tag that closes nothing is
/// ignored); the start tag of a paragraph, list item, table cell or row, option or link closes an open one of its kind
/// (and a block's start tag an open paragraph), since its end is implied; a form inside a form is ignored. Elements
/// that hold nothing (`<br>`, `<img>`) are not opened, and comments and the text of `<script>`, `<style>` and their
/// kind hold no tags. Legacy pages of unclosed `<p>`s, `<li>`s and `<a name>`s, cells of `<font>`, stay shallow.
public enum MarkupNesting {
    private static func names(_ list: [String]) -> Set<[UInt8]> { Set(list.map { Array($0.utf8) }) }

    /// Elements that never hold others, and those a page holds once (their end is no boundary worth following).
    static let notOpened = names(["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                                  "wbr", "param", "keygen", "html", "head", "body"])
    /// Elements whose content is text up to their end tag.
    static let rawText = names(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
                                "plaintext"])
    /// For each element whose start implies the end of an open one: the elements it closes (the nearest, with all
    /// opened inside it), and those it does not reach past — the HTML standard's "in body" rules for li, dd/dt, p, a
    /// and option (scopes end at tables, cells, buttons, lists), "in table" for cells, rows and row groups.
    static let implied: [[UInt8]: (closes: Set<[UInt8]>, stopsAt: Set<[UInt8]>)] = {
        let scope = ["table", "td", "th", "caption", "button", "object", "marquee", "applet", "template"]
        var rules: [String: (closes: [String], stopsAt: [String])] = [
            "li": (["li"], scope + ["ul", "ol"]), "dt": (["dt", "dd"], scope + ["dl"]), "dd": (["dt", "dd"], scope + ["dl"]),
            "option": (["option"], scope + ["select"]), "optgroup": (["optgroup", "option"], scope + ["select"]),
            "a": (["a"], scope), "td": (["td", "th"], ["table", "tr"]), "th": (["td", "th"], ["table", "tr"]),
            "tr": (["tr"], ["table"]), "thead": (["thead", "tbody", "tfoot"], ["table"]),
            "tbody": (["thead", "tbody", "tfoot"], ["table"]), "tfoot": (["thead", "tbody", "tfoot"], ["table"]),
        ]
        // The elements whose start closes an open paragraph (in its button scope).
        for block in ["address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
                      "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
                      "hgroup", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "ul"] {
            rules[block] = (["p"], scope)
        }
        return Dictionary(uniqueKeysWithValues: rules.map { (Array($0.key.utf8), (names($0.value.closes), names($0.value.stopsAt))) })
    }()

    /// Whether `html`'s elements nest more than `limit` deep by this estimate.
    public static func exceeds(_ limit: Int, in html: String) -> Bool {
        var html = html
        return html.withUTF8 { exceeds(limit, in: $0) }
    }

    private static func exceeds(_ limit: Int, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var open: [[UInt8]] = []
        var openCount: [[UInt8]: Int] = [:]
        func close(from index: Int) {
            for name in open[index...] { openCount[name, default: 1] -= 1 }
            open.removeSubrange(index...)
        }
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
            // The tag ends at the first '>' outside a quoted attribute value (a quote opens one only after '=').
            var quote: UInt8?, afterEquals = false
            while end < count, quote != nil || bytes[end] != UInt8(ascii: ">") {
                let byte = bytes[end]
                if let open = quote {
                    if byte == open { quote = nil }
                } else if afterEquals, byte == 0x22 || byte == 0x27 {
                    quote = byte
                }
                if quote == nil, byte != 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D { afterEquals = byte == UInt8(ascii: "=") }
                end += 1
            }
            let selfClosing = end > 0 && end < count && bytes[end - 1] == UInt8(ascii: "/")
            index = end + 1
            if closing {
                if openCount[name, default: 0] > 0, let last = open.lastIndex(of: name) { close(from: last) }
                continue
            }
            if rawText.contains(name) {
                index = findEndTag(name, in: bytes, from: index) ?? count
                continue
            }
            if let rule = implied[name], rule.closes.contains(where: { openCount[$0, default: 0] > 0 }) {
                // The nearest open element it closes, not past one it stops at.
                var at = open.count - 1
                while at >= 0, !rule.closes.contains(open[at]), !rule.stopsAt.contains(open[at]) { at -= 1 }
                if at >= 0, rule.closes.contains(open[at]) { close(from: at) }
            }
            if notOpened.contains(name) || selfClosing || (name == Array("form".utf8) && openCount[name, default: 0] > 0) { continue }
            open.append(name)
            openCount[name, default: 0] += 1
            if open.count > limit { return true }
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
