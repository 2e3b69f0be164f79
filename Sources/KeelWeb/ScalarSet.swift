/// A set of Unicode scalars given as ranges, with a bitmap for ASCII (the common case) and a binary search for
/// the rest. Built once from the generated tables' "A6 B0-B5 …" notation.
struct ScalarSet: Sendable {
    private var ascii: (UInt64, UInt64) = (0, 0)
    private var lows: [UInt32] = []
    private var highs: [UInt32] = []

    /// `notation`: hexadecimal code points and inclusive ranges (`41-5A`), separated by white space, ascending.
    init(_ notation: String) {
        for item in notation.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let bounds = item.split(separator: "-").map { UInt32($0, radix: 16)! }
            let low = bounds[0], high = bounds.count == 2 ? bounds[1] : bounds[0]
            precondition(lows.isEmpty || low > highs[highs.count - 1], "ranges must ascend: \(item)")
            lows.append(low)
            highs.append(high)
            if low < 128 { for value in low...min(high, 127) { insertASCII(value) } }
        }
    }

    /// A set of the given characters.
    init(characters: String) {
        let values = characters.unicodeScalars.map(\.value).sorted()
        for value in values where lows.last != value {
            lows.append(value)
            highs.append(value)
            if value < 128 { insertASCII(value) }
        }
    }

    private mutating func insertASCII(_ value: UInt32) {
        if value < 64 { ascii.0 |= 1 << UInt64(value) } else { ascii.1 |= 1 << UInt64(value - 64) }
    }

    func contains(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 64 { return ascii.0 & (1 << UInt64(value)) != 0 }
        if value < 128 { return ascii.1 & (1 << UInt64(value - 64)) != 0 }
        // The last range starting at or below `value`.
        var low = 0, high = lows.count
        while low < high {
            let middle = (low + high) / 2
            if lows[middle] <= value { low = middle + 1 } else { high = middle }
        }
        return low > 0 && value <= highs[low - 1]
    }
}
