import Foundation
import KeelCore

extension CommunicationOperation.Kind {
    /// This collective as consecutive collectives of at most `limit` elements each, which together do what it does:
    /// MPI's counts and displacements are 32-bit, so one MPI call moves at most 2³¹ − 1 elements, and a model chunk
    /// of more parameters (broadcast at start, all-gathered by ZeRO) needs several.
    ///
    /// The gathering and scattering collectives are cut along the whole buffer (all ranks' blocks, in rank order):
    /// piece i covers its elements [i · limit, (i + 1) · limit), and each rank's block in it is the part of its block
    /// that falls there (often none). Every rank cuts alike, since the cut depends only on the counts, which every
    /// rank passes alike. A collective within the limit, a send, a receive and a barrier are one piece: themselves.
    /// `rank` is the caller's rank (where its own block of a reduce-scatter or gather lies); `scalar` the element type.
    func pieces(limit: Int, rank: Int, scalar: ScalarKind) -> [Self] {
        precondition(limit > 0, "a message limit of \(limit) elements")
        let size = scalar.byteCount
        /// The windows [start, end) of `total` elements, `limit` at a time.
        func windows(_ total: Int) -> [Range<Int>] {
            stride(from: 0, to: total, by: limit).map { $0..<min($0 + limit, total) }
        }
        /// The part of each rank's block that lies in `window`, as counts; and where the caller's part begins in its block.
        func parts(_ counts: [Int], in window: Range<Int>) -> (counts: [Int], ownOffset: Int) {
            var start = 0, own = 0
            let clipped = counts.enumerated().map { member, count -> Int in
                defer { start += count }
                let block = start..<(start + count)
                if member == rank { own = min(max(window.lowerBound - block.lowerBound, 0), count) }
                return block.clamped(to: window).count
            }
            return (clipped, own)
        }
        let total = switch self {
        case .allGather(_, let counts), .reduceScatter(_, _, let counts, _), .gather(_, _, let counts, _): counts.reduce(0, +)
        default: 0
        }
        switch self {
        case .allReduce(let buffer, let count, let reduction) where count > limit:
            return windows(count).map { .allReduce(buffer + $0.lowerBound * size, count: $0.count, reduction) }
        case .broadcast(let buffer, let count, let root) where count > limit:
            return windows(count).map { .broadcast(buffer + $0.lowerBound * size, count: $0.count, root: root) }
        case .allGather(let buffer, let counts) where total > limit:
            return windows(total).map { window in
                .allGather(buffer + window.lowerBound * size, counts: parts(counts, in: window).counts)
            }
        case .reduceScatter(let source, let destination, let counts, let reduction) where total > limit:
            return windows(total).map { window in
                let (clipped, own) = parts(counts, in: window)
                return .reduceScatter(source: source + window.lowerBound * size, destination: destination + own * size,
                                      counts: clipped, reduction)
            }
        case .gather(let source, let destination, let counts, let root) where total > limit:
            return windows(total).map { window in
                let (clipped, own) = parts(counts, in: window)
                return .gather(source: source + own * size, destination: destination.map { $0 + window.lowerBound * size },
                               counts: clipped, root: root)
            }
        default:
            return [self]
        }
    }
}

extension CommunicationOperation {
    /// This operation as the consecutive operations of at most `limit` elements that MPI is handed
    /// (`Kind.pieces(limit:rank:scalar:)`), each labelled with its place ("… (piece 2 of 3)"), so that an error names the
    /// piece that failed; an operation within the limit is itself.
    func pieces(limit: Int, rank: Int) -> [CommunicationOperation] {
        let pieces = kind.pieces(limit: limit, rank: rank, scalar: scalar)
        guard pieces.count > 1 else { return [self] }
        return pieces.enumerated().map { index, piece in
            CommunicationOperation(piece, scalar: scalar, label: "\(label) (piece \(index + 1) of \(pieces.count))")
        }
    }
}

/// The most elements one MPI call moves: 2²⁸ (1 GiB of fp32), well within MPI's 32-bit counts (2³¹ − 1), so that
/// each piece of a collective of many gigabytes — the parameters broadcast at start, all-gathered by ZeRO — finishes
/// within the hang detector's timeout over a slow link and counts as progress (a piece of 2³¹ − 1 fp32 elements, 8 GiB,
/// takes about 69 s on 1 Gb/s Ethernet, over the default 60 s timeout, and was taken for a hang). `KEEL_MPI_MESSAGE_LIMIT` sets another, up to 2³¹ − 1,
/// for tests that cut small models' collectives into pieces.
let mpiMessageLimit: Int = {
    let most = Int(Int32.max)
    guard let text = ProcessInfo.processInfo.environment["KEEL_MPI_MESSAGE_LIMIT"] else { return 1 << 28 }
    guard let value = Int(text), (1...most).contains(value) else {
        StandardStreams.error("warning: KEEL_MPI_MESSAGE_LIMIT=\(text) is not a count from 1 to \(most); using \(most)\n")
        return most
    }
    StandardStreams.error("note: MPI collectives go in pieces of at most \(value) elements (KEEL_MPI_MESSAGE_LIMIT)\n")
    return value
}()
