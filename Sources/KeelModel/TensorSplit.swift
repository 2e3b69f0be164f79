/// This process's place in a tensor-parallel group: which of `size` pieces of each split tensor it holds.
public struct TensorRank: Sendable, Equatable {
    public let rank: Int
    public let size: Int

    public init(rank: Int, size: Int) {
        precondition(size >= 1 && (0..<size).contains(rank), "tensor rank \(rank) of \(size)")
        self.rank = rank
        self.size = size
    }

    /// The whole model on one rank.
    public static let whole = TensorRank(rank: 0, size: 1)
}

/// How Megatron-style tensor parallelism cuts a tensor across the ranks of a tensor group.
public enum TensorSplit: Sendable, Equatable {
    /// Every rank holds all of it (norms, the biases of row-parallel projections, GPT-2's position table).
    case replicated
    /// Cut along dimension `axis`, which is the concatenation of `blocks` (GPT-2's q | k | v columns are three
    /// blocks of d_model): each block is cut into pieces, and rank r holds piece r of every block, in block order —
    /// so a column-parallel q | k | v projection gives each rank whole heads of q, k and v. Piece r of a block of
    /// length b among n runs from ⌊r·b/n⌋ to ⌊(r+1)·b/n⌋: equal when n divides b (heads and MLP width must), and
    /// otherwise one apart (the vocabulary's rows, so that any vocabulary splits over any group).
    /// With `pieces` (a key or value projection's heads), it is never cut into more than that many: in a larger
    /// group, consecutive ranks share a piece (Megatron-LM's replicated key/value heads).
    case split(axis: Int, blocks: [Int], pieces: Int? = nil)

    /// Which piece a rank of a group holds, of how many: `rank` itself, unless the group is larger than `pieces`.
    public func piece(for rank: TensorRank) -> TensorRank {
        guard case .split(_, _, let limit?) = self, rank.size > limit else { return rank }
        return TensorRank(rank: rank.rank * limit / rank.size, size: limit)
    }

    /// The shape of piece `piece` of a tensor of `shape`.
    public func shape(of shape: [Int], piece: TensorRank) -> [Int] {
        guard case .split(let axis, let blocks, _) = self, piece.size > 1 else { return shape }
        var local = shape
        local[axis] = blocks.reduce(0) { $0 + Self.run(of: $1, piece: piece).count }
        return local
    }

    /// The elements along the axis that piece `piece` holds of a block of `length`.
    static func run(of length: Int, piece: TensorRank) -> Range<Int> {
        (piece.rank * length / piece.size)..<((piece.rank + 1) * length / piece.size)
    }

    /// Whether a group of `size` ranks can hold it: every block divides into its pieces, and with `pieces`,
    /// the group's size and `pieces` divide one another.
    public func divides(by size: Int) -> Bool {
        guard case .split(_, let blocks, let limit) = self else { return true }
        let pieces = min(size, limit ?? size)
        return size % pieces == 0 && (limit ?? pieces) % pieces == 0 && blocks.allSatisfy { $0 % pieces == 0 }
    }

    /// Copies `rank`'s piece of `whole` (laid out row-major as `shape`) into `piece`, or with `gathering`, the
    /// other way: the piece back into its place in `whole`.
    public func copy(_ whole: UnsafeMutablePointer<Float>, shape: [Int], _ piece: UnsafeMutablePointer<Float>,
                     rank: TensorRank, gathering: Bool = false) {
        let count = shape.reduce(1, *)
        guard case .split(let axis, let blocks, _) = self, rank.size > 1 else {
            if gathering { whole.update(from: piece, count: count) } else { piece.update(from: whole, count: count) }
            return
        }
        // The tensor is `outer` slabs of `shape[axis] × inner` elements; along the axis, rank r's runs are
        // piece r of each block.
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        var runs: [Range<Int>] = []
        var start = 0
        for block in blocks {
            let run = Self.run(of: block, piece: rank)
            runs.append((start + run.lowerBound)..<(start + run.upperBound))
            start += block
        }
        let localLength = runs.reduce(0) { $0 + $1.count }
        var p = piece
        for slab in 0..<outer {
            for run in runs {
                let w = whole + (slab * shape[axis] + run.lowerBound) * inner
                if gathering { w.update(from: p, count: run.count * inner) } else { p.update(from: w, count: run.count * inner) }
                p += run.count * inner
            }
        }
        assert(p - piece == outer * localLength * inner)
    }
}
