import Foundation
import KeelCore
import KeelData

/// `metrics.jsonl`: one JSON object per line, appended and flushed as each step ends.
///
/// Floats are written with Swift's shortest round-trip representation, so parsing a logged loss and
/// converting it to Float gives back exactly the Float the run computed.
public final class MetricsLog: @unchecked Sendable {
    private let handle: FileHandle
    public let url: URL
    /// Where the scalar fields of every record are also written (`logging.tensorboard`).
    public var tensorBoard: TensorBoardLog?
    /// The newest value of every numeric field, for a metrics endpoint (`keel train --metrics-port`) that reads
    /// them from another thread.
    private var latest: [String: Double] = [:]
    /// The fields the last record of each kind (named by its first field after `step`) set: a newer record of
    /// that kind drops those it does not repeat, so no value outlives the record kind that stopped writing it.
    private var fieldsOfKind: [String: Set<String>] = [:]
    private let latestLock = NSLock()

    /// Opens `url` for appending. With `keepingThrough`, first drops records of steps after that one
    /// (a resumed run rewrites the steps it repeats), and a line cut off, replacing the file atomically. The file is
    /// read a line at a time: a month's file is hundreds of megabytes, and every restart reads it (a whole copy in
    /// memory took 4.6 times its size).
    public init(url: URL, keepingThrough lastStep: Int?) throws {
        self.url = url
        if let lastStep, FileManager.default.fileExists(atPath: url.path) {
            try AtomicFile.write(to: url) { output in
                var kept = Data()
                try TextLines.forEach(inFile: url.path) { line in
                    guard let step = Self.step(of: line), step <= lastStep else { return }
                    kept.append(line.baseAddress!, count: line.count)
                    kept.append(0x0A)
                    if kept.count >= 1 << 20 { try output.write(contentsOf: kept); kept.removeAll(keepingCapacity: true) }
                }
                try output.write(contentsOf: kept)
            }
        } else if lastStep == nil || !FileManager.default.fileExists(atPath: url.path) {
            try AtomicFile.write(Data(), to: url)
        }
        guard let handle = try? FileHandle(forWritingTo: url) else { throw KeelError("cannot open \(url.path) for writing") }
        try handle.seekToEnd()
        self.handle = handle
    }

    deinit {
        try? handle.close()
    }

    /// How `write` starts every record (made once: `step(of:)` reads every line of a month's file).
    private static let recordStart = Array(#"{"step": "#.utf8)

    /// The step of a record, nil for a line that is not a whole one. A line as `write` makes it (`{"step": N, …}`) is
    /// read by its first field; another is parsed whole.
    static func step(of line: UnsafeBufferPointer<UInt8>) -> Int? {
        let prefix = recordStart
        if line.count > prefix.count, line.last == UInt8(ascii: "}"), line.starts(with: prefix) {
            var step = 0, index = prefix.count
            while index < line.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(line[index]), step < Int.max / 20 {
                step = step * 10 + Int(line[index] - UInt8(ascii: "0"))
                index += 1
            }
            if index > prefix.count, index < line.count, line[index] == UInt8(ascii: ",") || line[index] == UInt8(ascii: "}") {
                return step
            }
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return nil }
        return object["step"] as? Int
    }

    /// A field's value in a record.
    public enum Field {
        case int(Int), float(Float), double(Double), doubles([Double])

        var json: String {
            switch self {
            case .int(let v): return String(v)
            case .float(let v): return v.isFinite ? "\(v)" : "null"
            case .double(let v): return v.isFinite ? "\(v)" : "null"
            case .doubles(let v): return "[" + v.map { Field.double($0).json }.joined(separator: ", ") + "]"
            }
        }
    }

    /// Appends one record with fields in the given order.
    public func write(_ fields: KeyValuePairs<String, Field>) throws {
        try write(fields.map { ($0.key, $0.value) })
    }

    /// Appends one record with fields in the given order.
    public func write(_ fields: [(key: String, value: Field)]) throws {
        let line = "{" + fields.map { "\"\($0.key)\": \($0.value.json)" }.joined(separator: ", ") + "}\n"
        let end = try handle.offset()
        do {
            try handle.write(contentsOf: Data(line.utf8))
        } catch {
            // The file keeps whole records only: a line cut off by a full disk is taken back.
            try? handle.truncate(atOffset: end)
            throw KeelError("cannot write \(url.path): \(AtomicFile.systemReason(error))")
        }
        let scalars = fields.compactMap { field -> (tag: String, value: Double)? in
            switch field.value {
            case .int(let v): (field.key, Double(v))
            case .float(let v): (field.key, Double(v))
            case .double(let v): (field.key, v)
            case .doubles: nil
            }
        }
        let kind = fields.first { $0.key != "step" }?.key ?? "step"
        latestLock.withLock {
            let written = Set(scalars.map(\.tag))
            for stale in (fieldsOfKind[kind] ?? []).subtracting(written) where stale != "step" { latest[stale] = nil }
            fieldsOfKind[kind] = written
            for (tag, value) in scalars { latest[tag] = value }
        }
        if let tensorBoard, let step = scalars.first(where: { $0.tag == "step" }) {
            try tensorBoard.write(step: Int(step.value), scalars: scalars.filter { $0.tag != "step" })
        }
    }

    /// The newest value of each numeric field written so far.
    public func latestValues() -> [String: Double] {
        latestLock.withLock { latest }
    }
}
