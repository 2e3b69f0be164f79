import Foundation
import KeelCore

/// How `Deduplicator` works and how much memory it may use.
public struct DeduplicationOptions: Sendable {
    /// Shingles, bands, rows, seed, hash width.
    public var minHash = MinHashParameters()
    /// Only exact duplicates (no MinHash).
    public var exactOnly = false
    /// Bytes of keys held in memory, with what sorting them takes, before they are sorted and spilled to run files
    /// (`Deduplicator.documentsPerRun`).
    public var memoryBudget = 1 << 30
    /// Run files merged at once (more are merged in passes).
    public var mergeFanIn = 64
    /// Where run files go (a fresh directory is made inside it and removed at the end).
    public var temporaryDirectory = FileManager.default.temporaryDirectory

    public init() {}

    /// What is wrong with these settings, in words (nil: nothing): checked before any document is read, as `keel data
    /// dedup` and `keel data pipeline` take them (the memory in megabytes).
    public static func problem(shingle: Int, bands: Int, rows: Int, memoryMegabytes: Int) -> String? {
        if shingle <= 0 || bands <= 0 || rows <= 0 { return "shingle, bands and rows must be positive (got \(shingle), \(bands), \(rows))" }
        // Each document gets bands × rows hashes.
        if bands > 1024 || rows > 1024 { return "bands and rows must be at most 1024 (got \(bands), \(rows))" }
        if !(1...(1 << 30)).contains(memoryMegabytes) { return "memory must be 1 to \(1 << 30) MB (got \(memoryMegabytes))" }
        // The sort buffers are allocated whole at the start: more than the machine holds ended the run in an
        // allocation failure, a temporary directory left behind.
        if let limit = MemoryLimit.current(), Double(memoryMegabytes) * 1_048_576 > limit.total {
            return "memory of \(memoryMegabytes) MB is more than \(limit.source) can hold (\(Int(limit.total / 1_048_576)) MB)"
        }
        return nil
    }
}

/// Finds exact and near-duplicate documents in a stream too large for memory, keeping the first of each cluster.
///
/// Every document added gets the next index. Its exact key (two XXH64 hashes of the text with runs of white space
/// made one space and the ends trimmed) and, unless `exactOnly`, one key per LSH band (the band's MinHash values)
/// go to external sorters; memory grows only by one `UInt32` per document, for union-find. `finish` streams each
/// sorter in key order: documents sharing an exact key, or a band's values, are merged into one cluster
/// (union-find whose root is always the cluster's smallest index), so the first document in input order is kept —
/// always, where datatrove's union-find may keep a later one (pairs 0~5 and 3~5 in two bands keep 3 there) — and
/// chains A~B~C form one cluster even when A and C share no bucket.
public final class Deduplicator {
    public let options: DeduplicationOptions
    private var hasher: MinHasher
    private let directory: URL
    private let exactKeys: ExternalSorter
    private let bandKeys: [ExternalSorter]
    private var parent: [UInt32] = []
    private var record: [UInt64]
    /// Documents whose keys are held before they are spilled: each has 3 words of exact key and, unless
    /// `exactOnly`, rows + 1 per band, and sorting a sorter's buffer takes 4 bytes of order per record beside it and
    /// half that again of merge space (one sorter at a time), so that keys and sorting together stay within
    /// `memoryBudget`; at most 2^32 − 1, the most the order's 32-bit numbers count.
    public let documentsPerRun: Int
    private var whitespaceNormalized: [UInt8] = []
    private var withoutShingles = 0
    private var finished = false

    public init(options: DeduplicationOptions = DeduplicationOptions()) throws {
        self.options = options
        hasher = MinHasher(options.minHash)
        let rows = options.minHash.rows
        Self.removeAbandoned(in: options.temporaryDirectory)
        let directory = options.temporaryDirectory
            .appendingPathComponent("keel-dedup-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(AtomicFile.host)")
        self.directory = directory
        do {
            try AtomicFile.createDirectory(directory)
        } catch {
            throw KeelError("deduplication's temporary files: \(AtomicFile.systemReason(error))")
        }
        let words = 3 + (options.exactOnly ? 0 : options.minHash.bands * (rows + 1))
        let documentsPerRun = min(Int(UInt32.max), max(1, options.memoryBudget / (8 * words + 6)))
        self.documentsPerRun = documentsPerRun
        exactKeys = ExternalSorter(width: 3, directory: directory, name: "exact", capacity: documentsPerRun)
        bandKeys = options.exactOnly ? [] : (0..<options.minHash.bands).map {
            ExternalSorter(width: rows + 1, directory: directory, name: "band\($0)", capacity: documentsPerRun)
        }
        record = [UInt64](repeating: 0, count: max(3, rows + 1))
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Removes the run directories that deduplications on this machine left when they were killed (SIGKILL, the
    /// out-of-memory killer, a preempted job): their process is gone, and their sorted runs hold up to a kilobyte
    /// per document.
    static func removeAbandoned(in temporary: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []
        for name in names where name.hasPrefix("keel-dedup-") {
            // keel-dedup-PID-RANDOM-HOST, the host compared whole (node-12 is not gpu-node-12).
            let parts = name.dropFirst("keel-dedup-".count).split(separator: "-", maxSplits: 2)
            guard parts.count == 3, let pid = Int32(parts[0]), AtomicFile.hasEnded(pid: pid, on: parts[2]) else { continue }
            try? FileManager.default.removeItem(at: temporary.appendingPathComponent(name))
        }
    }

    /// Documents added so far.
    public var count: Int { parent.count }

    /// Adds the next document.
    public func add(_ text: String) throws {
        precondition(!finished, "add after finish")
        guard parent.count < Int(UInt32.max) else { throw KeelError("more than \(UInt32.max - 1) documents") }
        let index = UInt64(parent.count)
        parent.append(UInt32(index))
        let (k0, k1) = exactKey(text)
        record[0] = k0
        record[1] = k1
        record[2] = index
        record.withUnsafeBufferPointer { exactKeys.append(UnsafeBufferPointer(rebasing: $0[0..<3])) }
        if !options.exactOnly {
            if let signature = hasher.signature(of: text) {
                let rows = options.minHash.rows
                for (band, sorter) in bandKeys.enumerated() {
                    for r in 0..<rows { record[r] = signature[band * rows + r] }
                    record[rows] = index
                    record.withUnsafeBufferPointer { sorter.append(UnsafeBufferPointer(rebasing: $0[0...rows])) }
                }
            } else {
                withoutShingles += 1
            }
        }
        // Every document has an exact key; the band sorters hold as many or fewer (documents without shingles).
        if exactKeys.bufferedRecords >= documentsPerRun {
            try exactKeys.spill()
            for sorter in bandKeys { try sorter.spill() }
        }
    }

    /// Clusters the documents. `candidatePair` (optional) is called once for every pair of documents (i < j) that
    /// share a bucket of some band — LSH's candidate pairs, exact duplicates included; collecting them costs
    /// memory in the number of pairs.
    public func finish(candidatePair: ((Int, Int) -> Void)? = nil) throws -> DeduplicationResult {
        precondition(!finished, "finish twice")
        finished = true
        var exact = [Bool](repeating: false, count: parent.count)
        // Exact keys: every document after the first of its group is an exact duplicate of it.
        try groups(of: exactKeys, keyWidth: 2) { members in
            for m in members.dropFirst() {
                exact[Int(m)] = true
                union(members[0], m)
            }
        }
        var pairs = Set<UInt64>()
        for sorter in bandKeys {
            try groups(of: sorter, keyWidth: options.minHash.rows) { members in
                for m in members.dropFirst() { union(members[0], m) }
                if candidatePair != nil {
                    for j in 1..<members.count {
                        for i in 0..<j { pairs.insert(UInt64(members[i]) << 32 | UInt64(members[j])) }
                    }
                }
            }
        }
        if let candidatePair {
            for pair in pairs.sorted() { candidatePair(Int(pair >> 32), Int(pair & 0xFFFF_FFFF)) }
        }
        for i in parent.indices { parent[i] = find(UInt32(i)) }
        let spilled = exactKeys.spilledRuns + bandKeys.reduce(0) { $0 + $1.spilledRuns }
        try? FileManager.default.removeItem(at: directory)
        return DeduplicationResult(representative: parent, exact: exact, withoutShingles: withoutShingles, spilledRuns: spilled)
    }

    /// Streams `sorter` and calls `body` with the documents (ascending) of every run of two or more records whose
    /// first `keyWidth` words agree.
    private func groups(of sorter: ExternalSorter, keyWidth: Int, _ body: ([UInt32]) -> Void) throws {
        var key = [UInt64](repeating: 0, count: keyWidth)
        var members: [UInt32] = []
        try sorter.merge(fanIn: options.mergeFanIn) { r in
            var same = !members.isEmpty
            if same { for k in 0..<keyWidth where r[k] != key[k] { same = false; break } }
            if !same {
                if members.count > 1 { body(members) }
                members.removeAll(keepingCapacity: true)
                for k in 0..<keyWidth { key[k] = r[k] }
            }
            members.append(UInt32(r[keyWidth]))
        }
        if members.count > 1 { body(members) }
    }

    private func find(_ x: UInt32) -> UInt32 {
        var x = Int(x)
        while parent[x] != UInt32(x) {
            parent[x] = parent[Int(parent[x])]  // path halving
            x = Int(parent[x])
        }
        return UInt32(x)
    }

    private func union(_ a: UInt32, _ b: UInt32) {
        let ra = find(a), rb = find(b)
        if ra < rb { parent[Int(rb)] = ra } else if rb < ra { parent[Int(ra)] = rb }
    }

    /// Two independent XXH64 hashes (128 bits: no collision in any real corpus) of the text with white space
    /// normalised: runs of it become one space, the ends are trimmed. Case and punctuation count.
    private func exactKey(_ text: String) -> (UInt64, UInt64) {
        // A local array (swapped with the stored one to keep its capacity): appending to a class's property would
        // pay a run-time exclusivity check per character.
        var whitespaceNormalized: [UInt8] = []
        swap(&whitespaceNormalized, &self.whitespaceNormalized)
        defer { swap(&whitespaceNormalized, &self.whitespaceNormalized) }
        whitespaceNormalized.removeAll(keepingCapacity: true)
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            if PythonText.isSpace(scalar) {
                pendingSpace = true
                continue
            }
            if pendingSpace && !whitespaceNormalized.isEmpty { whitespaceNormalized.append(0x20) }
            pendingSpace = false
            MinHasher.appendUTF8(scalar.value, to: &whitespaceNormalized)
        }
        return whitespaceNormalized.withUnsafeBytes {
            (XXH64.hash($0, seed: 0), XXH64.hash($0, seed: 0x9E37_79B9_7F4A_7C15))
        }
    }
}

/// What `Deduplicator.finish` found, document by document.
public struct DeduplicationResult: Sendable {
    /// For each document, the index of the document kept for its cluster (itself when it is kept).
    public let representative: [UInt32]
    /// For each document, whether an earlier document has the same exact key.
    public let exact: [Bool]
    /// Documents with fewer words than a shingle (no signature, so only exact duplicates of them are found).
    public let withoutShingles: Int
    /// Run files the sorters wrote (0 when everything fit in memory).
    public let spilledRuns: Int

    public var documents: Int { representative.count }
    public func isKept(_ document: Int) -> Bool { representative[document] == UInt32(document) }
    /// Documents removed.
    public var removed: Int { representative.indices.count { !isKept($0) } }
    /// Documents removed as exact duplicates.
    public var exactDuplicates: Int { exact.count { $0 } }
    /// Clusters of two or more documents.
    public var clusters: Int { Set(representative.indices.filter { !isKept($0) }.map { representative[$0] }).count }
    /// Clusters with at least one removed document that is not an exact duplicate (found by MinHash).
    public var nearDuplicateClusters: Int {
        Set(representative.indices.filter { !isKept($0) && !exact[$0] }.map { representative[$0] }).count
    }
}
