import Foundation

/// The human-language text a JavaScript-rendered page keeps outside its visible DOM: the state a framework
/// serialises for the browser to render from (Next.js `__NEXT_DATA__`, Nuxt `__NUXT__`, Redux-style
/// `window.__INITIAL_STATE__`, Apollo's `__APOLLO_STATE__`), schema.org JSON-LD (`articleBody`, `text`,
/// `description`), and `<noscript>` fallbacks.
///
/// JSON is parsed as JSON; a script that is JavaScript rather than JSON (Nuxt's `(function(a,b){return {…}}(…))`)
/// gives its string literals. Of all those strings, prose is kept: at least `minimumWords` words, mostly
/// letters, not a URL, a path, markup-free code or an identifier; a string holding HTML is reduced to its text.
struct EmbeddedState {
    /// Fewer words than this is a label, a name or a key, not prose.
    var minimumWords = 6

    /// One `<script>`: its `type` and `id` attributes and its text.
    struct Script {
        var type: String?
        var id: String?
        var text: String
    }

    /// The prose of the page's scripts and `noscript` texts, in document order, each once.
    func texts(scripts: [Script], noscripts: [String], htmlToText: (String) -> String) -> [String] {
        var found: [String] = []
        for script in scripts {
            let type = script.type?.lowercased() ?? ""
            if type == "application/ld+json" {
                if let json = Self.json(script.text) { Self.strings(in: json, keys: ["articleBody", "text", "description"], into: &found) }
            } else if script.id == "__NEXT_DATA__" || type == "application/json" {
                if let json = Self.json(script.text) { Self.strings(in: json, keys: nil, into: &found) }
            } else if Self.stateMarkers.contains(where: { Self.contains(script.text, $0) }) {
                // An assignment of a JSON object, or JavaScript whose string literals hold the text.
                if let object = Self.assignedObject(script.text), let json = Self.json(object) {
                    Self.strings(in: json, keys: nil, into: &found)
                } else {
                    found += Self.stringLiterals(script.text)
                }
            }
        }
        found += noscripts
        var seen = Set<String>(), prose: [String] = []
        for candidate in found {
            let text = (candidate.contains("<") && candidate.contains(">") ? htmlToText(candidate) : candidate)
                .split(whereSeparator: \.isWhitespace).joined(separator: " ")
            guard isProse(text), seen.insert(text).inserted else { continue }
            prose.append(text)
        }
        return prose
    }

    static let stateMarkers = ["__NUXT__", "__INITIAL_STATE__", "__APOLLO_STATE__", "__PRELOADED_STATE__", "__NEXT_DATA__",
                               "__INITIAL_DATA__", "__APP_STATE__"]

    /// Whether `text` contains `marker`, searched as bytes: scripts can be megabytes of bundled code, and Foundation's
    /// search over them cost more than the page's extraction.
    static func contains(_ text: String, _ marker: String) -> Bool {
        var text = text, marker = marker
        return text.withUTF8 { haystack in marker.withUTF8 { containsBytes(UnsafeRawBufferPointer(haystack), UnsafeRawBufferPointer($0)) } }
    }

    /// Whether `text` reads as prose: enough words, mostly letters, not a URL or path, not code.
    func isProse(_ text: String) -> Bool {
        let words = text.split(separator: " ")
        guard words.count >= minimumWords, !text.hasPrefix("http"), !text.hasPrefix("/") else { return false }
        var letters = 0, other = 0, code = 0
        for scalar in text.unicodeScalars {
            if scalar.properties.isAlphabetic { letters += 1 } else if scalar != " " { other += 1 }
            if "{}=;<>|\\".unicodeScalars.contains(scalar) { code += 1 }
        }
        return letters >= 3 * other && code * 50 < letters && words.filter { $0.count > 40 }.isEmpty
    }

    private static func json(_ text: String) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    }

    /// The string values under `json`: every one, or those of the given keys (at any depth).
    private static func strings(in json: Any, keys: Set<String>?, into found: inout [String]) {
        switch json {
        case let object as [String: Any]:
            // Keys in a fixed order, so the text comes out the same every run.
            for key in object.keys.sorted() {
                let value = object[key]!
                if let string = value as? String {
                    if keys == nil || keys!.contains(key) { found.append(string) }
                } else {
                    strings(in: value, keys: keys, into: &found)
                }
            }
        case let array as [Any]:
            for item in array {
                if let string = item as? String { if keys == nil { found.append(string) } } else { strings(in: item, keys: keys, into: &found) }
            }
        default:
            return
        }
    }

    /// The `{…}` assigned in `x.__STATE__ = {…}`, by bracket matching that skips strings.
    static func assignedObject(_ script: String) -> String? {
        let bytes = Array(script.utf8)
        guard let equals = stateMarkers.lazy.compactMap({ marker -> Int? in
            guard let range = script.range(of: marker) else { return nil }
            let after = script.utf8.distance(from: script.utf8.startIndex, to: range.upperBound)
            return bytes[after...].firstIndex(where: { $0 != 0x20 && $0 != 0x5D && $0 != 0x22 && $0 != 0x27 })
        }).first, equals < bytes.count, bytes[equals] == UInt8(ascii: "=") else { return nil }
        guard let open = bytes[(equals + 1)...].firstIndex(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x09 }),
              bytes[open] == UInt8(ascii: "{") else { return nil }
        var depth = 0, index = open, quote: UInt8?
        while index < bytes.count {
            let byte = bytes[index]
            if let open = quote {
                if byte == UInt8(ascii: "\\") { index += 1 } else if byte == open { quote = nil }
            } else if byte == 0x22 || byte == 0x27 {
                quote = byte
            } else if byte == UInt8(ascii: "{") {
                depth += 1
            } else if byte == UInt8(ascii: "}") {
                depth -= 1
                if depth == 0 { return String(decoding: bytes[open...index], as: UTF8.self) }
            }
            index += 1
        }
        return nil
    }

    /// The JavaScript string literals of `script` ("…", '…', and template literals without `${`), decoded.
    static func stringLiterals(_ script: String) -> [String] {
        let scalars = Array(script.unicodeScalars)
        var literals: [String] = []
        var index = 0
        while index < scalars.count {
            let quote = scalars[index]
            guard quote == "\"" || quote == "'" || quote == "`" else { index += 1; continue }
            var literal = String.UnicodeScalarView(), end = index + 1, valid = true
            while end < scalars.count, scalars[end] != quote {
                if scalars[end] == "\\", end + 1 < scalars.count {
                    end += 1
                    switch scalars[end] {
                    case "n": literal.append("\n")
                    case "t": literal.append("\t")
                    case "u":
                        let hex = String(String.UnicodeScalarView(scalars[(end + 1)..<min(end + 5, scalars.count)]))
                        if hex.count == 4, let value = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(value) {
                            literal.append(scalar)
                            end += 4
                        }
                    default: literal.append(scalars[end])
                    }
                } else {
                    if quote == "`", scalars[end] == "$", end + 1 < scalars.count, scalars[end + 1] == "{" { valid = false }
                    if quote != "`", scalars[end] == "\n" { valid = false; break }
                    literal.append(scalars[end])
                }
                end += 1
            }
            if valid, end < scalars.count { literals.append(String(literal)) }
            index = end + 1
        }
        return literals
    }
}
