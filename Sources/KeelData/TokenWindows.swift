import KeelCore

/// A split's tokens cut into windows of `length + 1` tokens (inputs and, shifted by one, targets).
///
/// Window w of a segment starts at token w·length, so consecutive windows share one token and every token
/// is a target exactly once. Windows never cross segments (shards or in-memory streams).
public final class TokenWindows: @unchecked Sendable {
    /// Where a segment's tokens live.
    public enum Segment: @unchecked Sendable {
        case memory([Int32])
        case shard(TokenShard)

        var count: Int {
            switch self {
            case .memory(let tokens): return tokens.count
            case .shard(let shard): return shard.count
            }
        }
    }

    public let length: Int
    let segments: [Segment]
    /// windowStarts[s] is the index of segment s's first window; the last entry is the total.
    private let windowStarts: [Int]
    /// With document masking, the token that ends each document (end-of-text): a window's tokens after one start a
    /// new document, which attends only to itself.
    public let documentEnd: Int32?

    public init(segments: [Segment], length: Int, documentEnd: Int32? = nil) {
        precondition(length > 0)
        self.length = length
        self.segments = segments
        self.documentEnd = documentEnd
        var starts = [0]
        for segment in segments { starts.append(starts.last! + max(0, (segment.count - 1) / length)) }
        windowStarts = starts
    }

    /// Number of windows.
    public var count: Int { windowStarts.last! }
    /// Number of tokens over all segments.
    public var tokenCount: Int { segments.reduce(0) { $0 + $1.count } }
    /// Tokens no window has as a target: each segment's first, and the ones after its last whole window.
    public var unreachedCount: Int { tokenCount - count * length }
    /// The most tokens in one segment.
    public var longestSegment: Int { segments.map(\.count).max() ?? 0 }

    /// Copies window `index` into inputs[0..<length] and targets[0..<length].
    public func copy(window index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        precondition(index >= 0 && index < count, "window out of range")
        var low = 0, high = segments.count - 1
        while low < high {  // the last segment whose first window is ≤ index
            let mid = (low + high + 1) / 2
            if windowStarts[mid] <= index { low = mid } else { high = mid - 1 }
        }
        let start = (index - windowStarts[low]) * length
        switch segments[low] {
        case .memory(let tokens):
            tokens.withUnsafeBufferPointer { t in
                inputs.update(from: t.baseAddress! + start, count: length)
                targets.update(from: t.baseAddress! + start + 1, count: length)
            }
        case .shard(let shard):
            shard.copy(start..<(start + length), to: inputs)
            shard.copy((start + 1)..<(start + length + 1), to: targets)
        }
    }
}

extension TokenWindows {
    /// Up to `limit` tokens from the start of the segments, in order (for statistics such as the unigram
    /// baseline).
    public func leadingTokens(limit: Int) -> [Int32] {
        var result: [Int32] = []
        for segment in segments where result.count < limit {
            let n = min(segment.count, limit - result.count)
            switch segment {
            case .memory(let tokens): result += tokens[..<n]
            case .shard(let shard):
                var chunk = [Int32](repeating: 0, count: n)
                chunk.withUnsafeMutableBufferPointer { shard.copy(0..<n, to: $0.baseAddress!) }
                result += chunk
            }
        }
        return result
    }
}
