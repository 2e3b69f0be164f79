/// spaCy's English tokenizer (`spacy.blank("en")`), reimplemented: the word splitter under datatrove's Gopher,
/// C4 and FineWeb rules. Those rules count words, so a filter decides as datatrove does only if it splits words
/// as spaCy does — `don't` is `do` + `n't`, `stop-go` is three tokens, `U.S.` one, `5km` two, a URL one.
///
/// The algorithm follows spaCy's `Tokenizer` (tokenizer.pyx): split at white space; for each piece, unless it
/// is a special case, peel prefixes and suffixes until the rest is a special case or nothing changes, then split
/// the rest at infixes unless it is a URL. The data (affix classes and lists, 1,300 special cases) is spaCy's
/// own, generated into `EnglishTokenizerTables`. A second pass, as spaCy's, joins special cases that affix
/// splitting cut apart (`alpin):` is `alpin` + `):`, `Liebe’’` is `Liebe` + `’’`).
///
/// Text is handled as Unicode scalars, as Python indexes strings; tokens are ranges of the scalar array.
public struct EnglishTokenizer: Sendable {
    public static let shared = EnglishTokenizer()

    private struct SpecialCase: Sendable {
        var text: [Unicode.Scalar]
        var tokenLengths: [Int]

        /// Appends the special case's tokens, its text starting at `start`.
        func appendTokens(at start: Int, to tokens: inout [Range<Int>]) {
            var at = start
            for length in tokenLengths {
                tokens.append(at..<(at + length))
                at += length
            }
        }
    }

    private enum Prefix: Sendable {
        case literal([Unicode.Scalar])
        case plusNotBeforeDigit, dots, symbol
    }

    private let specialCases: [UInt64: [SpecialCase]]
    private let longestSpecialCase: Int
    private let prefixes: [Prefix]
    private let prefixStarts: Set<Unicode.Scalar>
    /// Literal suffixes by their last character.
    private let suffixes: [Unicode.Scalar: [[Unicode.Scalar]]]
    /// Currency signs and units, split off only after a digit, by their last character.
    private let afterDigitSuffixes: [Unicode.Scalar: [[Unicode.Scalar]]]
    private let symbols = ScalarSet(EnglishTokenizerTables.symbols)
    private let periodSuffixAfter = ScalarSet(EnglishTokenizerTables.periodSuffixAfter)
    private let upper = ScalarSet(EnglishTokenizerTables.upper)
    private let infixLower = ScalarSet(EnglishTokenizerTables.infixLower)
    private let infixUpper = ScalarSet(EnglishTokenizerTables.infixUpper)
    private let alpha = ScalarSet(EnglishTokenizerTables.alpha)
    private let alphaNumeric = ScalarSet(EnglishTokenizerTables.alphaNumeric)
    private let topLevelDomain = ScalarSet(EnglishTokenizerTables.urlTopLevelDomain)
    private let sentenceEnds: Set<Unicode.Scalar>
    /// Special cases that contain an affix, as spaCy's `_special_matcher` holds them: the tokens they split
    /// into without special cases, keyed by the hash of the first of those tokens.
    private var spanningSpecials: [UInt64: [(pieces: [[Unicode.Scalar]], special: SpecialCase)]] = [:]
    private var longestFirstPiece = 0
    /// The hashes of the special cases' texts and of the spanning ones' first pieces, as bits (`HashBits`): most
    /// words are neither, and a bit test is cheaper than a dictionary lookup.
    private let specialHashes: HashBits
    private var spanningHashes = HashBits()

    private init() {
        var specials: [UInt64: [SpecialCase]] = [:]
        var longest = 0
        for entry in EnglishTokenizerTables.specialCases {
            let parts = entry.split(separator: "\u{1F}", omittingEmptySubsequences: false)
            let text = Array(parts[0].unicodeScalars)
            let special = SpecialCase(text: text, tokenLengths: parts.dropFirst().map { $0.unicodeScalars.count })
            specials[Self.hash(text[...]), default: []].append(special)
            longest = max(longest, text.count)
        }
        specialCases = specials
        var hashes = HashBits()
        for hash in specials.keys { hashes.insert(hash) }
        specialHashes = hashes
        longestSpecialCase = longest
        prefixes = EnglishTokenizerTables.prefixes.map { piece in
            switch piece {
            case "<plus>": .plusNotBeforeDigit
            case "<dots>": .dots
            case "<symbol>": .symbol
            default: .literal(Array(piece.unicodeScalars))
            }
        }
        var starts = Set<Unicode.Scalar>()
        for case .literal(let text) in prefixes { starts.insert(text[0]) }
        prefixStarts = starts.union(["+", "."])
        func byLastCharacter(_ strings: [String]) -> [Unicode.Scalar: [[Unicode.Scalar]]] {
            Dictionary(grouping: strings.map { Array($0.unicodeScalars) }, by: { $0.last! })
        }
        suffixes = byLastCharacter(EnglishTokenizerTables.suffixes)
        afterDigitSuffixes = byLastCharacter(EnglishTokenizerTables.currencies + EnglishTokenizerTables.units)
        sentenceEnds = Set(EnglishTokenizerTables.sentenceEnds.map {
            precondition($0.unicodeScalars.count == 1, "a sentence end is one character")
            return $0.unicodeScalars.first!
        })
        let literalPrefixes = prefixes.compactMap { if case .literal(let text) = $0 { text } else { nil } }
        precondition(!(literalPrefixes + suffixes.values.joined()).contains { $0.allSatisfy(Self.isASCIILetter) }
                     && !(65...122).contains { Self.isASCIILetter(Unicode.Scalar(UInt8($0))) && symbols.contains(Unicode.Scalar(UInt8($0))) },
                     "the fast path for words of ASCII letters assumes no prefix, suffix or symbol is made of letters")
        for special in specials.values.joined() {
            let text = special.text, whole = 0..<text.count
            guard prefix(text, whole) > 0 || suffix(text, whole) > 0 || text.contains(" ")
                || whole.contains(where: { infix(text, at: $0, in: whole) != nil }) else { continue }
            let pieces = tokens(text, specialCases: false).map { Array(text[$0]) }
            spanningSpecials[Self.hash(pieces[0][...]), default: []].append((pieces, special))
            spanningHashes.insert(Self.hash(pieces[0][...]))
            longestFirstPiece = max(longestFirstPiece, pieces[0].count)
        }
    }

    /// The tokens of `text[range]` as ranges of `text`, white-space runs other than a single space included
    /// (as spaCy keeps them), in order.
    public func tokens(_ text: [Unicode.Scalar], in range: Range<Int>? = nil) -> [Range<Int>] {
        tokens(text, in: range, specialCases: true)
    }

    private func tokens(_ text: [Unicode.Scalar], in range: Range<Int>? = nil, specialCases: Bool) -> [Range<Int>] {
        let range = range ?? 0..<text.count
        var tokens: [Range<Int>] = []
        guard !range.isEmpty else { return tokens }
        var inSpace = PythonText.isSpace(text[range.lowerBound])
        var start = range.lowerBound
        for index in range where PythonText.isSpace(text[index]) != inSpace {
            if start < index { tokenize(text, start..<index, specialCases: specialCases, into: &tokens) }
            // A single space after a word belongs to it; any other white space becomes a token.
            start = text[index] == " " ? index + 1 : index
            inSpace.toggle()
        }
        if start < range.upperBound { tokenize(text, start..<range.upperBound, specialCases: specialCases, into: &tokens) }
        if specialCases { joinSpanningSpecials(text, &tokens) }
        return tokens
    }

    /// spaCy's `_apply_special_cases`: every run of tokens that spells a special case's affix-split tokens is
    /// a candidate; longer runs win, then earlier ones, and a run touching a taken token is dropped; a kept
    /// run whose text (spaces included) is the special case becomes the special case's tokens.
    private func joinSpanningSpecials(_ text: [Unicode.Scalar], _ tokens: inout [Range<Int>]) {
        var matches: [(start: Int, end: Int)] = []
        for (index, token) in tokens.enumerated() where token.count <= longestFirstPiece {
            let hash = Self.hash(text[token])
            guard spanningHashes.contains(hash), let candidates = spanningSpecials[hash] else { continue }
            for candidate in candidates where index + candidate.pieces.count <= tokens.count {
                let matched = candidate.pieces.indices.allSatisfy { text[tokens[index + $0]].elementsEqual(candidate.pieces[$0]) }
                if matched { matches.append((index, index + candidate.pieces.count)) }
            }
        }
        guard !matches.isEmpty else { return }
        matches.sort { $0.end - $0.start != $1.end - $1.start ? $0.end - $0.start > $1.end - $1.start : $0.start < $1.start }
        var taken = Set<Int>()
        var kept: [(start: Int, end: Int)] = []
        for match in matches {
            if !taken.contains(match.start), !taken.contains(match.end - 1) { kept.append(match) }
            taken.formUnion(match.start..<match.end)
        }
        var joined: [Range<Int>] = []
        var next = 0
        for match in kept.sorted(by: { $0.start < $1.start }) {
            joined.append(contentsOf: tokens[next..<match.start])
            let span = tokens[match.start].lowerBound..<tokens[match.end - 1].upperBound
            if let special = special(text, span) {
                special.appendTokens(at: span.lowerBound, to: &joined)
            } else {
                joined.append(contentsOf: tokens[match.start..<match.end])
            }
            next = match.end
        }
        joined.append(contentsOf: tokens[next...])
        tokens = joined
    }

    /// The words of `text[range]` as datatrove's `split_into_words` returns them: the tokens without the
    /// white-space ones.
    public func words(_ text: [Unicode.Scalar], in range: Range<Int>? = nil) -> [Range<Int>] {
        tokens(text, in: range).filter { !PythonText.isSpace(text[$0.lowerBound]) }
    }

    /// The number of sentences spaCy's sentencizer finds in `text[range]` — datatrove's `split_into_sentences`
    /// count, which C4's five-sentence rule uses. A sentence ends after a sentence-ending token once a token
    /// that is neither punctuation nor sentence-ending follows.
    public func sentenceCount(_ text: [Unicode.Scalar], in range: Range<Int>? = nil) -> Int {
        let tokens = tokens(text, in: range)
        guard !tokens.isEmpty else { return 1 }
        var sentences = 1, seenEnd = false
        for (index, token) in tokens.enumerated() {
            let isEnd = token.count == 1 && sentenceEnds.contains(text[token.lowerBound])
            if seenEnd, !isEnd, !isPunctuation(text[token]) {
                if index > 0 { sentences += 1 }
                seenEnd = false
            } else if isEnd {
                seenEnd = true
            }
        }
        return sentences
    }

    /// spaCy's `is_punct`: every character's general category is P*.
    private func isPunctuation(_ token: ArraySlice<Unicode.Scalar>) -> Bool {
        token.allSatisfy {
            switch $0.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation: true
            default: false
            }
        }
    }

    // MARK: - One white-space-free piece

    private func tokenize(_ text: [Unicode.Scalar], _ piece: Range<Int>, specialCases: Bool, into tokens: inout [Range<Int>]) {
        // Most words are ASCII letters only: no affix, infix or URL can split them (`init` checks that the tables
        // hold none made of letters alone), so they are a special case or one token.
        if text[piece].allSatisfy(Self.isASCIILetter) {
            if specialCases, let special = special(text, piece) {
                special.appendTokens(at: piece.lowerBound, to: &tokens)
            } else {
                tokens.append(piece)
            }
            return
        }
        var start = piece.lowerBound, end = piece.upperBound
        var prefixes: [Range<Int>] = [], suffixes: [Range<Int>] = []
        var lastSize = 0
        func special(_ text: [Unicode.Scalar], _ range: Range<Int>) -> SpecialCase? {
            specialCases ? self.special(text, range) : nil
        }
        while start < end, end - start != lastSize {
            if special(text, start..<end) != nil { break }
            lastSize = end - start
            let prefixLength = prefix(text, start..<end)
            if prefixLength > 0, start + prefixLength < end, special(text, (start + prefixLength)..<end) != nil {
                prefixes.append(start..<(start + prefixLength))
                start += prefixLength
                break
            }
            let suffixLength = suffix(text, (start + prefixLength)..<end)
            if suffixLength > 0, end - suffixLength > start, special(text, start..<(end - suffixLength)) != nil {
                suffixes.append((end - suffixLength)..<end)
                end -= suffixLength
                break
            }
            if prefixLength > 0, suffixLength > 0, prefixLength + suffixLength <= end - start {
                prefixes.append(start..<(start + prefixLength))
                suffixes.append((end - suffixLength)..<end)
                start += prefixLength
                end -= suffixLength
            } else if prefixLength > 0 {
                prefixes.append(start..<(start + prefixLength))
                start += prefixLength
            } else if suffixLength > 0 {
                suffixes.append((end - suffixLength)..<end)
                end -= suffixLength
            }
            if special(text, start..<end) != nil { break }
        }
        tokens.append(contentsOf: prefixes)
        if start < end {
            if let special = special(text, start..<end) {
                special.appendTokens(at: start, to: &tokens)
            } else if isURL(text, start..<end) {
                tokens.append(start..<end)
            } else {
                splitInfixes(text, start..<end, into: &tokens)
            }
        }
        tokens.append(contentsOf: suffixes.reversed())
    }

    private static func hash(_ scalars: ArraySlice<Unicode.Scalar>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for scalar in scalars { hash = (hash ^ UInt64(scalar.value)) &* 0x100_0000_01b3 }
        return hash
    }

    private func special(_ text: [Unicode.Scalar], _ range: Range<Int>) -> SpecialCase? {
        guard range.count <= longestSpecialCase else { return nil }
        let hash = Self.hash(text[range])
        guard specialHashes.contains(hash), let candidates = specialCases[hash] else { return nil }
        return candidates.first { $0.text[...] == text[range] }
    }

    /// The length of the prefix: the first of spaCy's prefix alternatives that matches, in its order.
    private func prefix(_ text: [Unicode.Scalar], _ range: Range<Int>) -> Int {
        let first = text[range.lowerBound]
        guard prefixStarts.contains(first) || symbols.contains(first) else { return 0 }
        for candidate in prefixes {
            switch candidate {
            case .literal(let literal):
                if PythonText.hasPrefix(text, range, literal) { return literal.count }
            case .plusNotBeforeDigit:
                if first == "+", range.count == 1 || !isDigit(text[range.lowerBound + 1]) { return 1 }
            case .dots:
                let run = text[range].prefix { $0 == "." }.count
                if run >= 2 { return run }
            case .symbol:
                if symbols.contains(first) { return 1 }
            }
        }
        return 0
    }

    /// The length of the suffix. spaCy's suffix regular expression is searched, so the leftmost match wins;
    /// every alternative ends at the end, so that is the longest matching alternative.
    private func suffix(_ text: [Unicode.Scalar], _ range: Range<Int>) -> Int {
        guard !range.isEmpty else { return 0 }
        let last = text[range.upperBound - 1]
        var longest = 0
        for literal in suffixes[last] ?? [] where literal.count > longest && PythonText.hasSuffix(text, range, literal) {
            longest = literal.count
        }
        let dots = text[range].reversed().prefix { $0 == "." }.count
        if dots >= 2 { longest = max(longest, dots) }
        if symbols.contains(last) { longest = max(longest, 1) }
        func after(_ length: Int, where condition: (Unicode.Scalar) -> Bool) -> Bool {
            range.count > length && condition(text[range.upperBound - length - 1])
        }
        if last == "+", after(1, where: isDigit) { longest = max(longest, 1) }
        for literal in afterDigitSuffixes[last] ?? [] where literal.count > longest
            && PythonText.hasSuffix(text, range, literal) && after(literal.count, where: isDigit) {
            longest = literal.count
        }
        if last == ".", longest == 0 {
            let count = range.count
            if count >= 3, "FfCcKk".unicodeScalars.contains(text[range.upperBound - 2]), text[range.upperBound - 3] == "°" {
                longest = 1
            } else if after(1, where: periodSuffixAfter.contains) {
                longest = 1
            } else if count >= 3, upper.contains(text[range.upperBound - 2]), upper.contains(text[range.upperBound - 3]) {
                longest = 1
            }
        }
        return longest
    }

    private func isDigit(_ scalar: Unicode.Scalar) -> Bool { (48...57).contains(scalar.value) }

    private static func isASCIILetter(_ scalar: Unicode.Scalar) -> Bool { (97...122).contains(scalar.value | 0x20) }

    /// Splits at spaCy's infixes: its alternatives tried in order at each position, left to right, a match
    /// at the very start skipped (spaCy keeps it in the next token).
    private func splitInfixes(_ text: [Unicode.Scalar], _ range: Range<Int>, into tokens: inout [Range<Int>]) {
        var start = range.lowerBound, index = range.lowerBound
        while index < range.upperBound {
            guard let length = infix(text, at: index, in: range) else { index += 1; continue }
            if index != range.lowerBound {
                if index != start { tokens.append(start..<index) }
                tokens.append(index..<(index + length))
                start = index + length
            }
            index += length
        }
        if start < range.upperBound { tokens.append(start..<range.upperBound) }
    }

    private func infix(_ text: [Unicode.Scalar], at index: Int, in range: Range<Int>) -> Int? {
        let character = text[index]
        let before: Unicode.Scalar? = index > range.lowerBound ? text[index - 1] : nil
        func next(_ offset: Int) -> Unicode.Scalar? { index + offset < range.upperBound ? text[index + offset] : nil }
        if character == ".", next(1) == "." {
            return text[index..<range.upperBound].prefix { $0 == "." }.count
        }
        if character == "…" || symbols.contains(character) { return 1 }
        guard let before else { return nil }
        if isDigit(before), "+-*^".unicodeScalars.contains(character), let after = next(1), isDigit(after) || after == "-" {
            return 1
        }
        if character == ".", infixLower.contains(before), let after = next(1), infixUpper.contains(after) { return 1 }
        if character == ",", alpha.contains(before), let after = next(1), alpha.contains(after) { return 1 }
        guard alphaNumeric.contains(before) else { return nil }
        for dash in Self.dashes where text[index...].starts(with: dash) && index + dash.count <= range.upperBound {
            if let after = next(dash.count), alpha.contains(after) { return dash.count }
        }
        if ":<>=/".unicodeScalars.contains(character), let after = next(1), alpha.contains(after) { return 1 }
        return nil
    }

    private static let dashes: [[Unicode.Scalar]] = ["-", "–", "—", "--", "---", "——", "~"].map { Array($0.unicodeScalars) }

    // MARK: - spaCy's URL pattern

    /// spaCy's `URL_MATCH`: optional scheme, optional user info, then a public IPv4 address or a domain whose
    /// top-level part is 2–63 lower-case letters, an optional port and an optional path, query or fragment.
    private func isURL(_ text: [Unicode.Scalar], _ range: Range<Int>) -> Bool {
        var starts = [range.lowerBound]
        if let colon = text[range].firstIndex(of: ":"), colon - range.lowerBound >= 2,
           text[range].dropFirst(colon - range.lowerBound).starts(with: "://".unicodeScalars),
           text[range.lowerBound..<colon].allSatisfy({ isWordCharacter($0) || $0 == "+" || $0 == "-" || $0 == "." }) {
            starts.append(colon + 3)
        }
        for start in starts where start < range.upperBound {
            if hostAndRest(text, start..<range.upperBound) { return true }
            // User info: anything up to some "@".
            for at in (start + 1)..<range.upperBound where text[at] == "@" {
                if hostAndRest(text, (at + 1)..<range.upperBound) { return true }
            }
        }
        return false
    }

    private func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || PythonText.isAlpha(scalar) || scalar.properties.numericType == .decimal
    }

    private func isLabelCharacter(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        return (48...57).contains(value) || (65...90).contains(value) || (97...122).contains(value) || (0xA1...0xFFFF).contains(value)
    }

    private func hostAndRest(_ text: [Unicode.Scalar], _ range: Range<Int>) -> Bool {
        guard !range.isEmpty else { return false }
        var end = range.lowerBound
        while end < range.upperBound, isLabelCharacter(text[end]) || text[end] == "." || text[end] == "_" || text[end] == "-" {
            end += 1
        }
        let host = range.lowerBound..<end
        guard isPublicIPv4(text, host) || isDomain(text, host) else { return false }
        var rest = end
        if rest < range.upperBound, text[rest] == ":" {
            let digits = text[(rest + 1)..<range.upperBound].prefix { $0.properties.numericType == .decimal }.count
            guard (2...5).contains(digits) else { return false }
            rest += 1 + digits
        }
        return rest == range.upperBound || "/?#".unicodeScalars.contains(text[rest])
    }

    private func isDomain(_ text: [Unicode.Scalar], _ host: Range<Int>) -> Bool {
        let labels = PythonText.split(text, on: ".", in: host)
        guard labels.count >= 2, let topLevel = labels.last, (2...63).contains(topLevel.count),
              text[topLevel].allSatisfy(topLevelDomain.contains) else { return false }
        return labels.dropLast().allSatisfy { label in
            guard (1...64).contains(label.count), isLabelCharacter(text[label.lowerBound]),
                  isLabelCharacter(text[label.upperBound - 1]) else { return false }
            return text[label].allSatisfy { isLabelCharacter($0) || $0 == "_" || $0 == "-" }
        }
    }

    private func isPublicIPv4(_ text: [Unicode.Scalar], _ host: Range<Int>) -> Bool {
        let parts = PythonText.split(text, on: ".", in: host)
        guard parts.count == 4, parts.allSatisfy({ (1...3).contains($0.count) && text[$0].allSatisfy(isDigit) }) else {
            return false
        }
        let strings = parts.map { String(String.UnicodeScalarView(text[$0])) }
        let values = strings.map { Int($0)! }
        func noLeadingZero(_ string: String) -> Bool { string.count == 1 || string.first != "0" }
        if values[0] == 10 || values[0] == 127 || (values[0] == 169 && values[1] == 254)
            || (values[0] == 192 && values[1] == 168) || (values[0] == 172 && (16...31).contains(values[1])) {
            return false
        }
        guard (1...223).contains(values[0]), noLeadingZero(strings[0]), (1...254).contains(values[3]),
              noLeadingZero(strings[3]) else { return false }
        // The middle two: 0–199 may carry leading zeros up to two digits ("05", "105"), 200–255 not.
        return [strings[1], strings[2]].allSatisfy { string in
            let value = Int(string)!
            return value <= 255 && (string.count < 3 || string.first == "1" || string.first == "2")
        }
    }
}

/// A set of 64-bit hashes as one bit each of 2¹⁶, indexed by the hash's low bits: `contains` may answer yes for a
/// hash never inserted (then the dictionary behind it says no), never no for one inserted.
private struct HashBits: Sendable {
    private var words = [UInt64](repeating: 0, count: 1 << 10)

    mutating func insert(_ hash: UInt64) { words[Int(hash >> 6 & 0x3FF)] |= 1 << (hash & 63) }

    func contains(_ hash: UInt64) -> Bool { words[Int(hash >> 6 & 0x3FF)] & (1 << (hash & 63)) != 0 }
}
