import KeelCore

/// Token (and optionally learned position) embedding lookup.
///
/// `vocabulary` is the ids whose rows `table` holds (all of them, or a tensor-parallel rank's slice, whose rows
/// start at its first id); a token outside it looks up zeros and gets no gradient here.
public enum Embedding {
    /// out[b, t] = table[tokens[b, t]] (+ positions[t]); out: [B·T, C]. With `documents` (each token's document
    /// start in its sequence), a token's position counts from its document's start.
    public static func forward(
        _ out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
        positions: UnsafePointer<Float>?, rows: Int, length: Int, columns c: Int, vocabulary: Range<Int>? = nil,
        documents: UnsafePointer<Int32>? = nil
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let o = out + r * c, id = Int(tokens[r])
                if let vocabulary {
                    if vocabulary.contains(id) {
                        o.update(from: table + (id - vocabulary.lowerBound) * c, count: c)
                    } else {
                        o.update(repeating: 0, count: c)
                    }
                } else {
                    o.update(from: table + id * c, count: c)
                }
                if let positions { add(positions + position(r, length, documents) * c, into: o, c) }
            }
        }
    }

    /// dTable[tokens[n]] += dOut[n]; dPositions[t] += dOut[b, t].
    ///
    /// Parallel over column blocks, each walking rows in order, so repeated tokens sum deterministically.
    public static func backward(
        dTable: UnsafeMutablePointer<Float>, dPositions: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
        tokens: UnsafePointer<Int32>, rows: Int, length: Int, columns c: Int, vocabulary: Range<Int>? = nil,
        documents: UnsafePointer<Int32>? = nil
    ) {
        ThreadPool.shared.parallelFor((c + 15) / 16) { blocks in
            let start = blocks.lowerBound * 16, width = min(c, blocks.upperBound * 16) - start
            for r in 0..<rows {
                let g = dOut + r * c + start, id = Int(tokens[r])
                if let vocabulary {
                    if vocabulary.contains(id) { add(g, into: dTable + (id - vocabulary.lowerBound) * c + start, width) }
                } else {
                    add(g, into: dTable + id * c + start, width)
                }
                if let dPositions { add(g, into: dPositions + position(r, length, documents) * c + start, width) }
            }
        }
    }

    /// Row r's position: in its sequence, or from its document's start.
    @inline(__always)
    static func position(_ r: Int, _ length: Int, _ documents: UnsafePointer<Int32>?) -> Int {
        r % length - (documents.map { Int($0[r]) } ?? 0)
    }
}
