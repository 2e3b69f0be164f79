/// How deeply a page's elements nest, estimated from its tags before it is parsed: MyHTML's tree building looks
/// through the stack of open elements for each new one, so a page nested a hundred thousand deep (`<div>` repeated,
/// broken or hostile markup) takes minutes to parse — 1 MB of it about a minute — only for its text to be refused as
/// too deep (`ContentExtractor.maximumDepth`). A page this estimate finds too deep is refused before parsing.
///
/// The estimate keeps a stack of open elements as an HTML parser does for the tags that decide depth: a start tag
/// opens an element and its end tag closes it with every element opened inside it (an end tag that closes nothing is
/// ignored); the start tag of a paragraph, list item, table cell or row, option or link closes an open one of its kind
/// (and a block's start tag an open paragraph; a table's, a table open at table level; a select's, an open select),
/// since its end is implied; a form inside a form is ignored; any heading's end tag ends the open heading. Elements
/// that hold nothing (`<br>`, `<img>`) are not opened, "/>" ends an element only inside SVG or MathML, and comments
/// and the text of `<script>`, `<style>` and their kind hold no tags. Legacy pages of unclosed `<p>`s, `<li>`s,
/// `<a name>`s, `<option>`s or `</table>`s, cells of `<font>`, mismatched headings, stay shallow.
public enum MarkupNesting {
    private static func names(_ list: [String]) -> Set<[UInt8]> { Set(list.map { Array($0.utf8) }) }

    /// Elements that never hold others, and those a page holds once (their end is no boundary worth following).
    static let notOpened = names(["area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
                                  "input", "keygen", "link", "menuitem", "meta", "param", "source", "track", "wbr", "html",
                                  "head", "body"])
    /// Names and markers the scan looks for, as bytes once rather than at every tag.
    private static let svg = Array("svg".utf8), math = Array("math".utf8), form = Array("form".utf8)
    private static let commentStart = Array("!--".utf8), commentEnd = Array("-->".utf8), endTagStart = Array("</".utf8)

    /// Headings, any of whose end tags ends the open one.
    static let headings = names(["h1", "h2", "h3", "h4", "h5", "h6"])
    /// Elements whose content is text up to their end tag.
    static let rawText = names(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
                                "plaintext"])
    /// What the start of an element implies: the end of the nearest open one of `closes` (with all opened inside it),
    /// unless one of `stopsAt` is nearer.
    struct ImpliedEnd {
        let closes: Set<[UInt8]>
        let stopsAt: Set<[UInt8]>
    }

    /// For each element whose start implies the end of an open one, the ends it implies — the HTML standard's "in
    /// body" rules for li, dd/dt, p, a, nobr, button, option and a select in a select (scopes end at tables, cells,
    /// buttons, lists), its "in table" rules for cells, rows, row groups and a table started at table level.
    static let implied: [[UInt8]: [ImpliedEnd]] = {
        let scope = ["table", "td", "th", "caption", "button", "object", "marquee", "applet", "template"]
        var rules: [String: [(closes: [String], stopsAt: [String])]] = [
            "li": [(["li"], scope + ["ul", "ol"])], "dt": [(["dt", "dd"], scope + ["dl"])], "dd": [(["dt", "dd"], scope + ["dl"])],
            "option": [(["option"], scope + ["select"])], "optgroup": [(["optgroup", "option"], scope + ["select"])],
            "select": [(["select"], ["table", "td", "th", "caption", "template"])],
            "a": [(["a"], scope)], "nobr": [(["nobr"], scope)], "button": [(["button"], scope.filter { $0 != "button" })],
            "td": [(["td", "th"], ["table", "tr"])], "th": [(["td", "th"], ["table", "tr"])], "tr": [(["tr"], ["table"])],
            "thead": [(["thead", "tbody", "tfoot"], ["table"])], "tbody": [(["thead", "tbody", "tfoot"], ["table"])],
            "tfoot": [(["thead", "tbody", "tfoot"], ["table"])],
            // A table started between another's rows (not in a cell) ends that one.
            "table": [(["table"], ["td", "th", "caption", "template"])],
        ]
        // The elements whose start closes an open paragraph (in its button scope).
        for block in ["address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
                      "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
                      "hgroup", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "ul"] {
            rules[block, default: []].append((["p"], scope))
        }
        return Dictionary(uniqueKeysWithValues: rules.map { name, ends in
            (Array(name.utf8), ends.map { ImpliedEnd(closes: names($0.closes), stopsAt: names($0.stopsAt)) })
        })
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
            if matches(commentStart, bytes, at: index) {
                index = find(commentEnd, in: bytes, from: index + 3).map { $0 + 3 } ?? count
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
            // "/>" ends an element only in SVG and MathML; HTML ignores it (`<div/>` opens a div).
            let selfClosing = end > 0 && end < count && bytes[end - 1] == UInt8(ascii: "/")
                && (openCount[svg, default: 0] > 0 || openCount[math, default: 0] > 0)
            index = end + 1
            if closing {
                if openCount[name, default: 0] > 0, let last = open.lastIndex(of: name) {
                    close(from: last)
                } else if headings.contains(name), let last = open.lastIndex(where: headings.contains) {
                    close(from: last)  // any heading's end tag ends the open heading
                }
                continue
            }
            if rawText.contains(name) {
                index = findEndTag(name, in: bytes, from: index) ?? count
                continue
            }
            for rule in implied[name] ?? [] where rule.closes.contains(where: { openCount[$0, default: 0] > 0 }) {
                // The nearest open element it closes, not past one it stops at.
                var at = open.count - 1
                while at >= 0, !rule.closes.contains(open[at]), !rule.stopsAt.contains(open[at]) { at -= 1 }
                if at >= 0, rule.closes.contains(open[at]) { close(from: at) }
            }
            // A heading started right inside another ends it.
            if headings.contains(name), let last = open.last, headings.contains(last) { close(from: open.count - 1) }
            if notOpened.contains(name) || selfClosing || (name == form && openCount[name, default: 0] > 0) { continue }
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

    private static func matches(_ pattern: [UInt8], _ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Bool {
        index + pattern.count <= bytes.count && bytes[index..<(index + pattern.count)].elementsEqual(pattern)
    }

    private static func find(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int? {
        guard index < bytes.count else { return nil }
        return bytes[index...].firstIndex(of: byte)
    }

    private static func find(_ pattern: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int? {
        var at = index
        while let candidate = find(pattern[0], in: bytes, from: at) {
            if matches(pattern, bytes, at: candidate) { return candidate }
            at = candidate + 1
        }
        return nil
    }

    /// Where the end tag of `name` (any case) begins, from `index` on.
    private static func findEndTag(_ name: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int? {
        var at = index
        while let candidate = find(endTagStart, in: bytes, from: at) {
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
