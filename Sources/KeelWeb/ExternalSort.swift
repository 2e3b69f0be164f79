import Foundation
import KeelCore

/// Sorts fixed-width records of 64-bit words (compared word by word) that may not fit in memory: records collect in
/// a buffer; `spill` sorts the buffer and writes it to a run file; `merge` streams every record in order, merging the
/// runs (fan-in at a time, in passes, so open files stay bounded) with the sorted remainder of the buffer.
///
/// Deduplication sorts bucket keys this way so that memory stays the size of the buffer however large the corpus.
final class ExternalSorter {
    /// Words per record.
    let width: Int
    private let directory: URL
    private let name: String
    private var buffer: [UInt64] = []
    private var runs: [URL] = []
    private var runsMade = 0

    /// A sorter whose buffer holds `capacity` records, allocated once: a buffer that grew by doubling would copy
    /// itself (holding both copies for a while) and keep up to twice what it holds.
    init(width: Int, directory: URL, name: String, capacity: Int) {
        precondition(width > 0 && capacity > 0)
        self.width = width
        self.directory = directory
        self.name = name
        buffer.reserveCapacity(capacity * width)
    }

    /// Records held in memory.
    var bufferedRecords: Int { buffer.count / width }
    /// Run files written so far.
    var spilledRuns: Int { runsMade }

    func append(_ record: UnsafeBufferPointer<UInt64>) {
        precondition(record.count == width)
        buffer.append(contentsOf: record)
    }

    /// Sorts the buffer into a new run file and empties it.
    func spill() throws {
        guard !buffer.isEmpty else { return }
        let url = nextRunURL()
        let writer = try RunWriter(url: url)
        try forEachSorted { try writer.write($0) }
        try writer.close()
        runs.append(url)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with every record in ascending order, then deletes the runs.
    func merge(fanIn: Int = 64, _ body: (UnsafeBufferPointer<UInt64>) throws -> Void) throws {
        precondition(fanIn >= 2)
        defer {
            for run in runs { try? FileManager.default.removeItem(at: run) }
            runs = []
        }
        if runs.isEmpty {
            try forEachSorted(body)
            buffer = []
            return
        }
        try spill()
        // Merge passes until the runs can be read all at once.
        while runs.count > fanIn {
            let group = Array(runs.prefix(fanIn))
            let url = nextRunURL()
            let writer = try RunWriter(url: url)
            try mergeRuns(group) { try writer.write($0) }
            try writer.close()
            for run in group { try? FileManager.default.removeItem(at: run) }
            runs = Array(runs.dropFirst(fanIn)) + [url]
        }
        try mergeRuns(runs, body)
    }

    private func nextRunURL() -> URL {
        runsMade += 1
        return directory.appendingPathComponent("\(name)-\(runsMade).run")
    }

    /// Calls `body` with the buffer's records in order: record numbers are sorted by their words (4 bytes per
    /// record besides the buffer, rather than a sorted copy of it).
    private func forEachSorted(_ body: (UnsafeBufferPointer<UInt64>) throws -> Void) throws {
        let w = width
        var order = [UInt32](0..<UInt32(buffer.count / w))
        try buffer.withUnsafeBufferPointer { records in
            order.sort { x, y in
                let i = Int(x) * w, j = Int(y) * w
                for k in 0..<w where records[i + k] != records[j + k] { return records[i + k] < records[j + k] }
                return false
            }
            for r in order { try body(UnsafeBufferPointer(rebasing: records[Int(r) * w..<Int(r) * w + w])) }
        }
    }

    /// A k-way merge of sorted run files through a binary heap of their current records.
    private func mergeRuns(_ urls: [URL], _ body: (UnsafeBufferPointer<UInt64>) throws -> Void) throws {
        let readers = try urls.map { try RunReader(url: $0, width: width) }
        defer { readers.forEach { $0.close() } }
        var heap: [Int] = []
        func less(_ a: Int, _ b: Int) -> Bool {
            let x = readers[a].current, y = readers[b].current
            for k in 0..<width where x[k] != y[k] { return x[k] < y[k] }
            return a < b
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && less(heap[l], heap[m]) { m = l }
                if r < heap.count && less(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for (i, reader) in readers.enumerated() where try reader.advance() { heap.append(i) }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        while let top = heap.first {
            try body(readers[top].current)
            if try !readers[top].advance() {
                heap[0] = heap[heap.count - 1]
                heap.removeLast()
            }
            if !heap.isEmpty { siftDown(0) }
        }
    }
}

/// Buffered writes of records to a run file; closed by `close`, or when dropped after a failed write.
private final class RunWriter {
    private let file: UnsafeMutablePointer<FILE>
    private let url: URL
    private var closed = false

    init(url: URL) throws {
        guard let file = fopen(url.path, "wb") else {
            throw KeelError("cannot create \(url.path): \(String(cString: strerror(errno)))")
        }
        setvbuf(file, nil, _IOFBF, 1 << 20)  // records are written one at a time
        self.file = file
        self.url = url
    }

    func write(_ words: UnsafeBufferPointer<UInt64>) throws {
        guard let base = words.baseAddress, words.count > 0 else { return }
        guard fwrite(base, 8, words.count, file) == words.count else {
            throw KeelError("cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    func close() throws {
        closed = true
        guard fclose(file) == 0 else { throw KeelError("cannot write \(url.path): \(String(cString: strerror(errno)))") }
    }

    deinit {
        if !closed { fclose(file) }
    }
}

/// Buffered reads of a run file, one record at a time.
private final class RunReader {
    private let file: UnsafeMutablePointer<FILE>
    private let url: URL
    private let width: Int
    private let chunk: UnsafeMutablePointer<UInt64>
    private let capacity: Int
    private var available = 0
    private var position = 0

    init(url: URL, width: Int) throws {
        guard let file = fopen(url.path, "rb") else {
            throw KeelError("cannot read \(url.path): \(String(cString: strerror(errno)))")
        }
        self.file = file
        self.url = url
        self.width = width
        capacity = width * 8192
        chunk = .allocate(capacity: capacity)
    }

    deinit { chunk.deallocate() }

    /// The record `advance` moved to.
    var current: UnsafeBufferPointer<UInt64> { UnsafeBufferPointer(start: chunk + position - width, count: width) }

    /// Moves to the next record; false at the end of the run.
    func advance() throws -> Bool {
        if position + width > available {
            let read = fread(chunk, 8, capacity, file)
            if read == 0 {
                if ferror(file) != 0 { throw KeelError("cannot read \(url.path): \(String(cString: strerror(errno)))") }
                return false
            }
            guard read % width == 0 else { throw KeelError("\(url.path): run file cut short") }
            available = read
            position = 0
        }
        position += width
        return true
    }

    func close() { fclose(file) }
}
