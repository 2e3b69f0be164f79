import Foundation
import KeelCore

/// Trains a byte-level BPE vocabulary on a corpus: split every document with the pattern, count the
/// distinct pieces (in parallel, one table per thread), learn merges with `BPETrainer`, and add
/// `<|endoftext|>` as the last id.
public enum TokenizerTraining {
    /// A vocabulary of at most `vocabSize` ids (256 bytes, the merges, end-of-text) learned from `inputs`:
    /// files or directories of text or JSONL, optionally compressed (see `DocumentSource`). `progress`
    /// receives status lines.
    public static func train(
        inputs: [String], vocabSize: Int, pattern: SplitPattern = .gpt2, progress: (String) -> Void = { _ in }
    ) throws -> BPEVocabulary {
        guard vocabSize >= 257 else {
            throw KeelError("tokenizer: --vocab-size must be at least 257 (256 bytes + end-of-text), got \(vocabSize)")
        }
        let start = Date()
        let pieces = try countPieces(files: TokenCorpus.expandText(inputs, reader: "tokenizer training"), pattern: pattern)
        guard !pieces.isEmpty else { throw KeelError("tokenizer: the training files hold no text") }
        progress(String(format: "counted %d distinct pieces in %.1f s", pieces.count, Date().timeIntervalSince(start)))
        let mergeStart = Date()
        let target = vocabSize - 257
        var reported = 0
        let merges = BPETrainer.train(pieces: pieces, mergeCount: target) { done in
            // About ten progress lines whatever the vocabulary size.
            if done - reported >= max(target / 10, 1) {
                reported = done
                progress("merges: \(done)/\(target)")
            }
        }
        progress(String(format: "learned %d merges in %.1f s", merges.count, Date().timeIntervalSince(mergeStart)))
        var tokens = (0..<256).map { [UInt8($0)] }
        for merge in merges { tokens.append(tokens[Int(merge.left)] + tokens[Int(merge.right)]) }
        return try BPEVocabulary(tokens: tokens, merges: merges.map { ($0.left, $0.right) },
                                 specialTokens: [BPEVocabulary.endOfTextText: Int32(tokens.count)], pattern: pattern)
    }

    /// Distinct pieces of all documents with their counts, in a deterministic order (by bytes).
    static func countPieces(files: [URL], pattern: SplitPattern) throws -> [(bytes: [UInt8], count: Int)] {
        let splitter = PreTokenizer(pattern: pattern)
        let threads = ThreadPool.shared.threadCount
        var tables = (0..<threads).map { _ in ByteStringTable(capacity: 1 << 16) }
        var counts = [[Int]](repeating: [], count: threads)
        var failures = [KeelError?](repeating: nil, count: threads)
        tables.withUnsafeMutableBufferPointer { tablePointer in
            counts.withUnsafeMutableBufferPointer { countPointer in
                failures.withUnsafeMutableBufferPointer { failurePointer in
                    ThreadPool.shared.parallelChunks(files.count) { slot, range in
                        do {
                            for index in range {
                                try DocumentSource(url: files[index]).forEachDocument { document in
                                    splitter.split(document) { piece in
                                        let key = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: document[piece]))
                                        if let known = tablePointer[slot].value(for: key) {
                                            countPointer[slot][Int(known)] += 1
                                        } else {
                                            tablePointer[slot].insert(key, value: Int32(countPointer[slot].count))
                                            countPointer[slot].append(1)
                                        }
                                    }
                                }
                            }
                        } catch {
                            failurePointer[slot] = error as? KeelError ?? KeelError("\(error)")
                        }
                    }
                }
            }
        }
        if let failure = failures.compactMap({ $0 }).first { throw failure }
        var merged: [[UInt8]: Int] = [:]
        for slot in 0..<threads {
            tables[slot].forEach { key, index in merged[Array(key), default: 0] += counts[slot][Int(index)] }
        }
        return merged.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { ($0.key, $0.value) }
    }
}
