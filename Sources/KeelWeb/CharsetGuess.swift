/// The encoding of undeclared, non-UTF-8 HTML, guessed from its bytes: each likely legacy encoding decodes a
/// sample, and the one whose text looks most like real text wins.
///
/// "Looks like text" is judged per byte, so that an encoding of one byte per character does not win by giving
/// twice the characters of a two-byte one: no undecodable sequences or control characters; the letters of one
/// script; words that do not mix scripts, do not turn to upper case in the middle (KOI8-R and windows-1251 read
/// each other's text with the cases swapped; Greek read as Cyrillic does too) and are not implausibly long (a
/// Chinese page read as Cyrillic is one endless word). Then what each script implies: in a Latin encoding accented
/// letters are a minority; Japanese has kana and Chinese has none; Korean puts spaces between its words and
/// Chinese does not; Chinese text stays in GB2312's rows. What this cannot tell apart is said in docs/data.md:
/// Latin encodings among themselves (windows-1252 is taken), and Big5 from GB18030 (GB18030 is taken).
enum CharsetGuess {
    /// Candidates, in the order that breaks ties.
    static let candidates = ["WINDOWS-1252", "WINDOWS-1251", "KOI8-R", "WINDOWS-1253", "GB18030", "CP932", "EUC-JP-MS", "CP949"]
    private static let twoByte: Set<String> = ["GB18030", "CP932", "EUC-JP-MS", "CP949"]

    private enum Script { case latin, greek, cyrillic, han, kana, hangul }

    /// The best candidate for `bytes` (which are not valid UTF-8), judged on the first 16 KB (eight decodings of a
    /// page cost more than extracting it; 16 KB of a page hold thousands of letters). With fewer than 16 bytes outside
    /// ASCII there is too little to judge, and windows-1252 — the HTML standard's default — stays.
    static func guess(_ bytes: [UInt8]) -> String {
        let sample = Array(bytes.prefix(1 << 14))
        guard sample.lazy.filter({ $0 >= 0x80 }).count >= 16 else { return candidates[0] }
        var best = (name: candidates[0], score: -Double.infinity)
        for name in candidates {
            let score = score(Charset.decode(sample, charset: name), as: name, from: sample)
            if score > best.score { best = (name, score) }
        }
        return best.name
    }

    private static func script(_ value: UInt32) -> Script? {
        switch value {
        case 0xC0...0x24F where value != 0xD7 && value != 0xF7, 0x1E00...0x1EFF: .latin
        case 0x370...0x3FF: .greek
        case 0x400...0x4FF: .cyrillic
        case 0x4E00...0x9FFF, 0x3400...0x4DBF: .han
        case 0x3040...0x30FF: .kana
        case 0xAC00...0xD7AF, 0x1100...0x11FF, 0x3130...0x318F: .hangul
        default: nil
        }
    }

    /// How much `text` (the sample decoded as `name`) looks like real text; higher is likelier.
    static func score(_ text: String, as name: String, from sample: [UInt8]) -> Double {
        let width = twoByte.contains(name) ? 2.0 : 1.0
        var counts: [Script: Int] = [:]
        var bad = 0, asciiLetters = 0, caseBreaks = 0, mixedWords = 0, longWords = 0, lower = 0, upper = 0, spacedHan = 0
        // The word being read: its letters outside ASCII, whether it has ASCII letters, its scripts.
        var wordLetters = 0, wordHasASCII = false, wordScripts = Set<Script>(), previousWasLower = false
        var previousScript: Script?
        func endWord() {
            // Japanese words mix kanji and kana, Korean ones Hangul and hanja: those mixes are one script here.
            let alphabetic = wordScripts.subtracting([.han, .kana, .hangul])
            let scripts = alphabetic.count + (alphabetic.count < wordScripts.count ? 1 : 0)
            if scripts > 1 || (wordHasASCII && !alphabetic.subtracting([.latin]).isEmpty) { mixedWords += wordLetters }
            if !alphabetic.isEmpty, wordLetters > 15 { longWords += wordLetters }
            wordLetters = 0
            wordHasASCII = false
            wordScripts = []
            previousWasLower = false
        }
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if value == 0xFFFD || (0x80...0x9F).contains(value) || (0xE000...0xF8FF).contains(value) {
                // Undecodable bytes, C1 controls, private use: not text.
                bad += 1
                endWord()
                continue
            }
            let properties = scalar.properties
            guard properties.isAlphabetic else {
                if value == 0x20, previousScript == .han { spacedHan += 1 }
                previousScript = nil
                endWord()
                continue
            }
            if properties.isUppercase, previousWasLower { caseBreaks += 1 }
            previousWasLower = properties.isLowercase
            if value < 0x80 {
                asciiLetters += 1
                wordHasASCII = true
                previousScript = nil
                continue
            }
            guard let kind = script(value) else { previousScript = nil; continue }
            counts[kind, default: 0] += 1
            wordLetters += 1
            wordScripts.insert(kind)
            previousScript = kind
            if kind == .cyrillic || kind == .greek {
                if properties.isLowercase { lower += 1 } else if properties.isUppercase { upper += 1 }
            }
        }
        endWord()

        // Chinese, Japanese and Korean mix their scripts; they count as one here.
        let cjk = (counts[.han] ?? 0) + (counts[.kana] ?? 0) + (counts[.hangul] ?? 0)
        let groups = [Double(counts[.latin] ?? 0), Double(counts[.greek] ?? 0), Double(counts[.cyrillic] ?? 0), Double(cjk)]
        let dominant = groups.max() ?? 0, letters = groups.reduce(0, +)
        var score = width * (dominant - 2 * (letters - dominant)) - 100 * Double(bad) - 5 * Double(caseBreaks)
            - 3 * Double(mixedWords) - 2 * Double(longWords)
        let kana = Double(counts[.kana] ?? 0), hangul = Double(counts[.hangul] ?? 0)
        switch name {
        case "WINDOWS-1252":
            // Western text is mostly ASCII letters; a page of accented letters is another script misread.
            let accented = Double(counts[.latin] ?? 0)
            if accented > 0.35 * (accented + Double(asciiLetters)) { score -= 3 * accented }
        case "WINDOWS-1251", "KOI8-R", "WINDOWS-1253":
            // Running text is mostly lower case; the wrong one of these reads it mostly upper case.
            if lower < upper { score -= dominant }
        case "CP932", "EUC-JP-MS":
            // Japanese is written with kana.
            if kana * 10 < Double(cjk) { score -= width * Double(cjk) }
        case "CP949":
            // Korean is written in Hangul.
            if hangul * 2 < Double(cjk) { score -= width * Double(cjk) }
        case "GB18030":
            // Chinese has no kana and no spaces between its words, and its common characters are GB2312's.
            if kana * 10 >= Double(max(1, cjk)) || Double(spacedHan) * 10 > Double(counts[.han] ?? 0) { score -= width * Double(cjk) }
            if gb2312Share(sample) < 0.8 { score -= width * Double(cjk) }
        default:
            break
        }
        return score
    }

    /// The share of the sample's two-byte sequences that lie in GB2312's rows (first byte A1–F7, second A1–FE),
    /// where nearly all of a Chinese text's characters are.
    private static func gb2312Share(_ sample: [UInt8]) -> Double {
        var inside = 0, pairs = 0, index = 0
        while index + 1 < sample.count {
            let lead = sample[index]
            guard lead >= 0x81 else { index += 1; continue }
            pairs += 1
            if (0xA1...0xF7).contains(lead), (0xA1...0xFE).contains(sample[index + 1]) { inside += 1 }
            index += 2
        }
        return pairs == 0 ? 0 : Double(inside) / Double(pairs)
    }
}
