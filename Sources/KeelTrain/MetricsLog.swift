import Foundation
import KeelCore

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
    /// (a resumed run rewrites the steps it repeats), replacing the file atomically.
    public init(url: URL, keepingThrough lastStep: Int?) throws {
        self.url = url
        let manager = FileManager.default
        if let lastStep, let existing = try? String(contentsOf: url, encoding: .utf8) {
            let kept = existing.split(separator: "\n").filter { line in
                guard let data = line.data(using: .utf8),
                      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                      let step = object["step"] as? Int
                else { return false }
                return step <= lastStep
            }
            try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: url)
        } else if lastStep == nil || !manager.fileExists(atPath: url.path) {
            try AtomicFile.write(Data(), to: url)
        }
        guard let handle = try? FileHandle(forWritingTo: url) else { throw KeelError("cannot open \(url.path) for writing") }
        try handle.seekToEnd()
        self.handle = handle
    }

    deinit {
        try? handle.close()
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
