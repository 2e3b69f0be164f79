/// Looks for stop strings in a text that arrives a few bytes at a time (generated tokens), in time proportional to
/// the bytes read whatever the stop strings: for each, the Knuth–Morris–Pratt automaton's state — the longest tail of
/// the text read that the stop string starts with — moves on one byte at a time.
///
/// A search done again over the text's end for every token costs, with stop strings of a kilobyte that a client
/// may send (`stop` of the OpenAI API), a million byte comparisons per stop string and token for a tail that keeps
/// almost matching; this costs a few per byte.
public struct StopStringSearch: Sendable {
    public let stops: [[UInt8]]
    /// Per stop string, its failure function: `failures[s][i]` is the length of the longest proper prefix of
    /// `stops[s][0...i]` that also ends it.
    private let failures: [[Int]]
    /// Per stop string, how many of its first bytes the text read ends with (fewer than its length).
    private var matched: [Int]
    /// Bytes read so far.
    public private(set) var count = 0

    /// A search for `stops`, none of them empty.
    public init(_ stops: [[UInt8]]) {
        precondition(!stops.contains { $0.isEmpty }, "an empty stop string")
        self.stops = stops
        failures = stops.map(Self.failureFunction)
        matched = Array(repeating: 0, count: stops.count)
    }

    private static func failureFunction(_ pattern: [UInt8]) -> [Int] {
        var failure = Array(repeating: 0, count: pattern.count), length = 0
        for index in pattern.indices.dropFirst() {
            while length > 0, pattern[index] != pattern[length] { length = failure[length - 1] }
            if pattern[index] == pattern[length] { length += 1 }
            failure[index] = length
        }
        return failure
    }

    /// Reads `bytes`, which follow those read before, and returns where (an offset into everything read) the
    /// earliest stop string that ends among them starts; nil when none does. Once one is found, the search is over:
    /// read nothing more.
    public mutating func read(_ bytes: [UInt8]) -> Int? {
        var earliest: Int?
        for (index, stop) in stops.enumerated() {
            var length = matched[index]
            for (offset, byte) in bytes.enumerated() {
                while length > 0, stop[length] != byte { length = failures[index][length - 1] }
                if stop[length] == byte { length += 1 }
                if length == stop.count {
                    let start = count + offset + 1 - stop.count
                    earliest = min(earliest ?? start, start)
                    break
                }
            }
            matched[index] = length
        }
        count += bytes.count
        return earliest
    }

    /// The length of the longest tail of the text read that a stop string starts with: what may yet become a stop
    /// string, and so is not certain text.
    public var pending: Int { matched.max() ?? 0 }
}
