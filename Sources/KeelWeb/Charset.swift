import Foundation
import Glibc

/// The character encoding of a web page, and its conversion to UTF-8 with glibc's iconv.
///
/// The encoding is found as the HTML standard's "encoding sniffing" does, in its order: a byte order mark; the
/// HTTP `Content-Type` charset; a `<meta charset>` or `<meta http-equiv="Content-Type" content="…; charset=…">`
/// in the first 1,024 bytes; then the bytes themselves — UTF-8 when they are valid UTF-8, otherwise the legacy
/// encoding whose decoding looks most like text (`CharsetGuess`: windows-1252, the standard's default for most
/// locales, unless the bytes read as Cyrillic, Greek, Chinese, Japanese or Korean). Labels are normalised as the WHATWG Encoding
/// standard maps them (latin1, ascii and iso-8859-1 mean windows-1252; gb2312 means GBK, read as GB18030; Shift_JIS and
/// EUC-JP are read with Microsoft's extensions, ① and Ⅱ among them, as browsers read them; UTF-32, UTF-7 and an empty
/// label name nothing, and are passed over). A declaration that a page's bytes contradict — a legacy encoding declared
/// for bytes that are valid UTF-8 with letters outside ASCII, as servers often mislabel pages — gives way to UTF-8:
/// the odds that legacy text is valid UTF-8 are negligible.
public enum Charset {
    /// Where the encoding was found.
    public enum Source: String, Sendable {
        case byteOrderMark = "bom", http, meta, bytes
    }

    /// The encoding of `bytes` (an HTML document) served with HTTP charset `httpCharset`.
    public static func detect(_ bytes: [UInt8], httpCharset: String?) -> (name: String, source: Source) {
        if bytes.starts(with: [0xef, 0xbb, 0xbf]) { return ("UTF-8", .byteOrderMark) }
        if bytes.starts(with: [0xfe, 0xff]) { return ("UTF-16BE", .byteOrderMark) }
        if bytes.starts(with: [0xff, 0xfe]) { return ("UTF-16LE", .byteOrderMark) }
        let valid = isValidUTF8(bytes)
        // Valid UTF-8 with some byte outside ASCII: UTF-8 whatever a declaration says (ASCII alone is the same in all).
        let evidentlyUTF8 = valid && bytes.contains { $0 >= 0x80 }
        // UTF-16 markup has a zero byte in every other place; a page declared UTF-16 without one is ASCII-compatible
        // (the standard reads a <meta> declaring UTF-16 as UTF-8 for this reason).
        let notUTF16 = !bytes.prefix(1024).contains(0)
        if let label = httpCharset, let name = normalized(label) {
            return (evidentlyUTF8 || (name.hasPrefix("UTF-16") && notUTF16) ? "UTF-8" : name, .http)
        }
        if let label = metaCharset(bytes.prefix(1024)), let name = normalized(label) {
            return (name.hasPrefix("UTF-16") || evidentlyUTF8 ? "UTF-8" : name, .meta)
        }
        return (valid ? "UTF-8" : CharsetGuess.guess(bytes), .bytes)
    }

    /// `bytes` in `charset` as a string; sequences invalid in it become U+FFFD. An encoding iconv does not know is
    /// read as UTF-8.
    public static func decode(_ bytes: [UInt8], charset: String) -> String {
        if charset == "UTF-8" {
            return String(decoding: bytes.starts(with: [0xef, 0xbb, 0xbf]) ? bytes.dropFirst(3) : bytes[...], as: UTF8.self)
        }
        // A UTF-16 byte order mark is dropped too (iconv keeps it as U+FEFF, which would put the HTML parser in quirks
        // mode and the page's head into its body).
        if (charset == "UTF-16LE" && bytes.starts(with: [0xff, 0xfe])) || (charset == "UTF-16BE" && bytes.starts(with: [0xfe, 0xff])) {
            return decode(Array(bytes.dropFirst(2)), charset: charset)
        }
        let converter = iconv_open("UTF-8", charset)
        guard converter != iconv_t(bitPattern: -1) else { return String(decoding: bytes, as: UTF8.self) }
        defer { iconv_close(converter) }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 2)
        let unit = codeUnitBytes(charset)
        let replacement: [UInt8] = [0xef, 0xbf, 0xbd]
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        bytes.withUnsafeBufferPointer { input in
            var inPointer = UnsafeMutablePointer<CChar>(mutating: UnsafeRawPointer(input.baseAddress!).assumingMemoryBound(to: CChar.self))
            var inLeft = input.count
            while inLeft > 0 {
                let (result, produced, failure) = chunk.withUnsafeMutableBufferPointer { out -> (Int, Int, Int32) in
                    var outPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(out.baseAddress!).assumingMemoryBound(to: CChar.self)
                    var outLeft = out.count
                    var source: UnsafeMutablePointer<CChar>? = inPointer
                    let result = iconv(converter, &source, &inLeft, &outPointer, &outLeft)
                    let failure = errno
                    inPointer = source!
                    return (result, out.count - outLeft, failure)
                }
                output.append(contentsOf: chunk[..<produced])
                guard result == -1 else { continue }
                switch failure {
                case E2BIG:
                    continue
                case EILSEQ, EINVAL:
                    // An invalid (or, at the end, incomplete) sequence: one replacement character, one code unit
                    // skipped — one byte would leave UTF-16 or UTF-32 misaligned, and the rest of the page garbage.
                    let skipped = min(unit, inLeft)
                    output.append(contentsOf: replacement)
                    inPointer += skipped
                    inLeft -= skipped
                default:
                    return
                }
            }
        }
        // Flushed: some decoders (glibc's CP1258, TCVN) hold the last character back until told the input ended.
        let flushed = chunk.withUnsafeMutableBufferPointer { out -> Int in
            var outPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(out.baseAddress!).assumingMemoryBound(to: CChar.self)
            var outLeft = out.count
            _ = iconv(converter, nil, nil, &outPointer, &outLeft)
            return out.count - outLeft
        }
        output.append(contentsOf: chunk[..<flushed])
        return String(decoding: output, as: UTF8.self)
    }

    /// The bytes in one code unit of `charset`: 2 for UTF-16 (and UCS-2), 4 for UTF-32 (and UCS-4), 1 for the
    /// byte-oriented encodings, whose invalid sequences are passed over a byte at a time.
    static func codeUnitBytes(_ charset: String) -> Int {
        let name = charset.uppercased()
        if name.hasPrefix("UTF-16") || name.hasPrefix("UTF16") || name.hasPrefix("UCS-2") || name.hasPrefix("UCS2") { return 2 }
        if name.hasPrefix("UTF-32") || name.hasPrefix("UTF32") || name.hasPrefix("UCS-4") || name.hasPrefix("UCS4") { return 4 }
        return 1
    }

    /// The `charset` parameter of a `Content-Type` value.
    static func parameter(_ contentType: String) -> String? {
        guard let range = contentType.range(of: "charset", options: .caseInsensitive) else { return nil }
        var rest = contentType[range.upperBound...].drop { $0 == " " || $0 == "\t" }
        guard rest.first == "=" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" }
        let value = rest.prefix { !";\"' \t,>".contains($0) }
        return value.isEmpty ? nil : String(value)
    }

    /// The charset a `<meta>` declares in `head` (the HTML standard's prescan, simplified: `<meta` tags' `charset`
    /// attribute, or the `charset=` in the `content` of one with `http-equiv="content-type"`).
    static func metaCharset(_ head: ArraySlice<UInt8>) -> String? {
        let text = String(decoding: head, as: UTF8.self).lowercased()
        var searchFrom = text.startIndex
        while let meta = text.range(of: "<meta", range: searchFrom..<text.endIndex) {
            let tagEnd = text[meta.upperBound...].firstIndex(of: ">") ?? text.endIndex
            let tag = String(text[meta.upperBound..<tagEnd])
            if let value = attribute("charset", in: tag) { return value }
            if attribute("http-equiv", in: tag) == "content-type", let content = attribute("content", in: tag),
               let value = parameter(content) {
                return value
            }
            searchFrom = tagEnd
        }
        return nil
    }

    /// The value of attribute `name` in a tag's attribute text (quoted or not; the first of that name counts).
    private static func attribute(_ name: String, in tag: String) -> String? {
        let characters = Array(tag)
        var index = 0
        func skip(while condition: (Character) -> Bool) { while index < characters.count, condition(characters[index]) { index += 1 } }
        while index < characters.count {
            skip { $0.isWhitespace || $0 == "/" }
            let nameStart = index
            skip { !$0.isWhitespace && $0 != "=" && $0 != ">" }
            let found = String(characters[nameStart..<index])
            skip { $0.isWhitespace }
            var value = ""
            if index < characters.count, characters[index] == "=" {
                index += 1
                skip { $0.isWhitespace }
                if index < characters.count, characters[index] == "\"" || characters[index] == "'" {
                    let quote = characters[index]
                    index += 1
                    let valueStart = index
                    skip { $0 != quote }
                    value = String(characters[valueStart..<index])
                    index += 1
                } else {
                    let valueStart = index
                    skip { !$0.isWhitespace && $0 != ">" }
                    value = String(characters[valueStart..<index])
                }
            }
            if found == name { return value.trimmingCharacters(in: .whitespaces) }
            if found.isEmpty { index += 1 }
        }
        return nil
    }

    /// The name iconv knows for an encoding label (WHATWG Encoding standard's mapping for the common ones); nil for
    /// a label that names no encoding iconv has.
    static func normalized(_ label: String) -> String? {
        let key = label.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let aliases: [String: String] = [
            "utf8": "UTF-8", "utf-8": "UTF-8", "unicode-1-1-utf-8": "UTF-8",
            "ascii": "WINDOWS-1252", "us-ascii": "WINDOWS-1252", "latin1": "WINDOWS-1252", "iso-8859-1": "WINDOWS-1252",
            "iso8859-1": "WINDOWS-1252", "l1": "WINDOWS-1252", "cp1252": "WINDOWS-1252", "windows-1252": "WINDOWS-1252",
            "x-cp1252": "WINDOWS-1252",
            "gb2312": "GB18030", "gbk": "GB18030", "x-gbk": "GB18030", "gb18030": "GB18030", "chinese": "GB18030",
            "shift_jis": "CP932", "shift-jis": "CP932", "sjis": "CP932", "x-sjis": "CP932", "ms_kanji": "CP932", "ms932": "CP932",
            "windows-31j": "CP932", "csshiftjis": "CP932",
            "euc-jp": "EUC-JP-MS", "x-euc-jp": "EUC-JP-MS", "cseucpkdfmtjapanese": "EUC-JP-MS",
            // The standard's UTF-16LE labels; UTF-32 and UTF-7 are none of its encodings.
            "unicode": "UTF-16LE", "ucs-2": "UTF-16LE", "utf-16": "UTF-16LE", "iso-10646-ucs-2": "UTF-16LE", "csunicode": "UTF-16LE",
            "unicodefeff": "UTF-16LE", "utf-16le": "UTF-16LE", "utf-16be": "UTF-16BE", "unicodefffe": "UTF-16BE",
            "euc-kr": "CP949", "ks_c_5601-1987": "CP949", "windows-949": "CP949",
            "big5": "BIG5-HKSCS", "big5-hkscs": "BIG5-HKSCS", "x-x-big5": "BIG5-HKSCS",
            "iso-8859-9": "WINDOWS-1254", "latin5": "WINDOWS-1254", "tis-620": "WINDOWS-874", "iso-8859-11": "WINDOWS-874",
        ]
        // An empty label would be iconv's locale encoding; UTF-32, UCS-4 and UTF-7 are no encodings of the web's.
        guard !key.isEmpty, !["utf-32", "utf32", "ucs-4", "ucs4", "utf-7", "utf7"].contains(where: { key.hasPrefix($0) }) else { return nil }
        if let name = aliases[key] { return name }
        // A label iconv knows beyond the standard's must name an encoding that reads ASCII as ASCII, as every one of
        // the web's but UTF-16 does: iconv also takes "utf16", "ucs-2be", "unicodebig" (UTF-16, which a page served
        // in ASCII bytes would become CJK noise under) and EBCDIC's "ibm037", which no browser reads a page in.
        let name = key.uppercased()
        return readsASCIIAsASCII(name) ? name : nil
    }

    /// Whether iconv knows `name` and decodes the printable ASCII characters in it as themselves.
    private static func readsASCIIAsASCII(_ name: String) -> Bool {
        let converter = iconv_open("UTF-8", name)
        guard converter != iconv_t(bitPattern: -1) else { return false }
        iconv_close(converter)
        let ascii = (32..<127).map { UInt8($0) }
        return decode(ascii, charset: name) == String(decoding: ascii, as: UTF8.self)
    }

    /// Whether `bytes` are valid UTF-8.
    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        var iterator = bytes.makeIterator(), decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
