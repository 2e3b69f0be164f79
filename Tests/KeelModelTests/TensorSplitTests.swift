import KeelCore
import KeelModel
import XCTest

/// Tensor-parallel pieces of the parameter table: each rank's piece is cut from the whole model's initial
/// tensor, the pieces of all ranks put back together give the whole tensor, and a column-parallel q | k | v
/// piece holds whole heads of q, k and v.
final class TensorSplitTests: XCTestCase {
    private func config(_ architecture: Architecture, vocabulary: Int = 36) -> ModelConfig {
        ModelConfig(architecture: architecture, vocabSize: vocabulary, layers: 2, heads: 4, kvHeads: 2, width: 32, maxLength: 8)
    }

    /// Also for a vocabulary no group size divides: its rows are cut into pieces one row apart.
    func testPiecesOfEveryRankMakeTheWholeModel() throws {
        for (architecture, vocabulary) in Architecture.allCases.flatMap({ a in [36, 37].map { (a, $0) } }) {
            let config = config(architecture, vocabulary: vocabulary)
            let whole = ParameterTable(config: config), wholeValues = FloatBuffer(count: whole.count)
            whole.initialize(wholeValues, seed: 5)
            for size in [1, 2, 4] {
                XCTAssertTrue(ParameterTable.divides(config, by: size))
                let ranks = (0..<size).map { ParameterTable(config: config, layers: 0..<config.layers, tensor: TensorRank(rank: $0, size: size)) }
                let values = ranks.map { table in
                    let buffer = FloatBuffer(count: table.count)
                    table.initialize(buffer, seed: 5)
                    return buffer
                }
                for entry in whole.entries {
                    let rebuilt = FloatBuffer(count: entry.count)
                    rebuilt.pointer.update(repeating: .nan, count: entry.count)
                    var pieces = 0, seen = Set<Int>()
                    for (table, buffer) in zip(ranks, values) {
                        let piece = try XCTUnwrap(table[entry.name], "\(entry.name) missing")
                        XCTAssertEqual(piece.wholeShape, entry.shape)
                        if case .replicated = piece.split {
                            XCTAssertEqual(Array(UnsafeBufferPointer(start: buffer.pointer + piece.offset, count: piece.count)),
                                           Array(UnsafeBufferPointer(start: wholeValues.pointer + entry.offset, count: entry.count)),
                                           "\(architecture) tp=\(size): replicated \(entry.name) differs")
                        }
                        piece.split.copy(rebuilt.pointer, shape: entry.shape, buffer.pointer + piece.offset,
                                         rank: piece.tensorRank, gathering: true)
                        // Ranks that share a piece (key/value heads, at tp = 4 over 2 kv heads) count it once.
                        if seen.insert(piece.tensorRank.rank).inserted { pieces += piece.count }
                    }
                    if case .split = entry.split { XCTAssertEqual(pieces, entry.count, "\(entry.name)") }
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: rebuilt.pointer, count: entry.count)),
                                   Array(UnsafeBufferPointer(start: wholeValues.pointer + entry.offset, count: entry.count)),
                                   "\(architecture) V=\(vocabulary) tp=\(size): \(entry.name) put back together differs")
                }
            }
        }
    }

    /// Llama with 2 key/value heads over 4 tensor ranks: ranks 0 and 1 hold kv head 0, ranks 2 and 3 head 1 —
    /// whole heads, never half of one — while each holds its own query head.
    func testKeyValueHeadsAreSharedWhenRanksOutnumberThem() throws {
        let config = config(.llama), d = config.headDim
        XCTAssertFalse(ParameterTable.divides(ModelConfig(architecture: .llama, vocabSize: 36, layers: 2, heads: 6, kvHeads: 3,
                                                          width: 48, maxLength: 8), by: 2),
                       "2 ranks cannot share 3 kv heads")
        for rank in 0..<4 {
            let table = ParameterTable(config: config, layers: 0..<2, tensor: TensorRank(rank: rank, size: 4))
            let key = table["model.layers.0.self_attn.k_proj.weight"]!, query = table["model.layers.0.self_attn.q_proj.weight"]!
            XCTAssertEqual(key.shape, [d, config.width])
            XCTAssertEqual(key.tensorRank, TensorRank(rank: rank / 2, size: 2))
            XCTAssertEqual(query.shape, [d, config.width])
            XCTAssertEqual(query.tensorRank, TensorRank(rank: rank, size: 4))
        }
    }

    /// GPT-2's c_attn is [c, 3c] with q, k and v as column blocks of c, heads in order within each: rank r of
    /// 2 holds columns of heads 2r and 2r + 1 of each block, q first.
    func testColumnParallelQKVHoldsWholeHeads() throws {
        let config = config(.gpt2), c = config.width, half = c / 2
        let whole = ParameterTable(config: config), wholeValues = FloatBuffer(count: whole.count)
        whole.initialize(wholeValues, seed: 9)
        let name = "transformer.h.1.attn.c_attn.weight", w = whole[name]!
        for rank in 0..<2 {
            let table = ParameterTable(config: config, layers: 0..<2, tensor: TensorRank(rank: rank, size: 2))
            let values = FloatBuffer(count: table.count)
            table.initialize(values, seed: 9)
            let piece = table[name]!
            XCTAssertEqual(piece.shape, [c, 3 * half])
            for row in [0, 7, c - 1] {
                for (block, column) in [(0, 0), (0, half - 1), (1, 3), (2, half - 1)] {
                    XCTAssertEqual(values.pointer[piece.offset + row * 3 * half + block * half + column],
                                   wholeValues.pointer[w.offset + row * 3 * c + block * c + rank * half + column],
                                   "rank \(rank), row \(row), block \(block), column \(column)")
                }
            }
        }
    }

    /// Heads and the MLP's width must divide; the vocabulary's rows need not (they are cut one row apart).
    func testSizesThatDoNotDivideAreRefused() {
        XCTAssertFalse(ParameterTable.divides(config(.gpt2), by: 3))   // 4 heads
        XCTAssertFalse(ParameterTable.divides(config(.llama), by: 3))  // 4 heads, 2 kv heads
        XCTAssertTrue(ParameterTable.divides(config(.gpt2, vocabulary: 37), by: 2))
        XCTAssertTrue(ParameterTable.divides(config(.llama, vocabulary: 37), by: 4))
        let pieces = (0..<4).map { ParameterTable(config: config(.llama, vocabulary: 37), layers: 0..<2, tensor: TensorRank(rank: $0, size: 4)) }
        XCTAssertEqual(pieces.map { $0["lm_head.weight"]!.shape[0] }, [9, 9, 9, 10])
        XCTAssertEqual(pieces.map { $0["model.embed_tokens.weight"]!.shape[0] }, [9, 9, 9, 10])
    }
}
