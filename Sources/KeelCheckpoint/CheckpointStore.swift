import Foundation
import KeelCore

/// Checkpoint directories that are either complete and verified or ignored.
///
/// A checkpoint `root/step_00000100/` is written as `root/.step_00000100.partial/`; its files are fsynced,
/// `manifest.json` (size and XXH64 of every file) is written last, and the directory is renamed into place.
/// A crash at any moment leaves either no checkpoint or a complete one; a file damaged later is caught by
/// its checksum.
public enum CheckpointStore {
    /// One file's record in `manifest.json`.
    public struct FileRecord: Codable, Equatable, Sendable {
        public let bytes: Int
        public let xxh64: String
    }

    /// The name of the checkpoint directory for `step`.
    public static func name(step: Int) -> String {
        "step_" + String(repeating: "0", count: max(0, 8 - String(step).count)) + String(step)
    }

    /// Writes a checkpoint: `writers` maps file names to functions that write that file at the URL given.
    @discardableResult
    public static func write(root: URL, step: Int, writers: [(String, (URL) throws -> Void)]) throws -> URL {
        let manager = FileManager.default
        try manager.createDirectory(at: root, withIntermediateDirectories: true)
        let final = root.appendingPathComponent(name(step: step))
        let partial = root.appendingPathComponent("." + name(step: step) + ".partial")
        try? manager.removeItem(at: partial)
        try manager.createDirectory(at: partial, withIntermediateDirectories: false)
        do {
            var records: [String: FileRecord] = [:]
            for (file, writer) in writers {
                let url = partial.appendingPathComponent(file)
                try writer(url)
                records[file] = try record(of: url)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(encoder.encode(records), to: partial.appendingPathComponent("manifest.json"))
            if manager.fileExists(atPath: final.path) { try manager.removeItem(at: final) }
            try AtomicFile.rename(partial, to: final)
        } catch {
            // A full disk or a file-size limit: nothing half-written stays behind, the older checkpoints are intact.
            try? manager.removeItem(at: partial)
            throw KeelError("checkpoint \(final.path) was not written (the previous ones are intact): \(error)")
        }
        return final
    }

    /// One file of a checkpoint as its manifest records it, and what is wrong with it now (nil: it is intact).
    public struct FileStatus: Sendable {
        public let name: String
        public let recorded: FileRecord
        public let problem: String?
    }

    /// Every file `directory`'s manifest lists, each checked against its recorded size and checksum; throws
    /// when there is no readable manifest.
    public static func inspect(_ directory: URL) throws -> [FileStatus] {
        let manifestURL = directory.appendingPathComponent("manifest.json")
        guard let data = try? Data(contentsOf: manifestURL) else {
            throw KeelError("checkpoint \(directory.path) is incomplete: no manifest.json")
        }
        let records: [String: FileRecord]
        do { records = try JSONDecoder().decode([String: FileRecord].self, from: data) } catch {
            throw KeelError("checkpoint \(directory.path): manifest.json is malformed: \(decodingProblem(error))")
        }
        return try records.sorted(by: { $0.key < $1.key }).map { file, expected in
            let url = directory.appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: url.path) else {
                return FileStatus(name: file, recorded: expected, problem: "\(file) is missing")
            }
            let actual = try record(of: url)
            let problem = actual.bytes != expected.bytes
                ? "\(file) has \(actual.bytes) bytes, expected \(expected.bytes) (truncated?)"
                : actual.xxh64 != expected.xxh64 ? "\(file) fails its checksum" : nil
            return FileStatus(name: file, recorded: expected, problem: problem)
        }
    }

    /// Throws unless `directory` holds a manifest and every file it lists has the recorded size and checksum.
    public static func verify(_ directory: URL) throws {
        if let problem = try inspect(directory).compactMap(\.problem).first {
            throw KeelError("checkpoint \(directory.path) is damaged: \(problem)")
        }
    }

    /// Complete checkpoint directories under `root`, newest step first.
    public static func list(_ root: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { $0.hasPrefix("step_") }.sorted(by: >).map { root.appendingPathComponent($0) }
    }

    /// The newest checkpoint under `root` that verifies, and a message for each newer one that did not.
    public static func latestValid(in root: URL) -> (checkpoint: URL?, problems: [String]) {
        var problems: [String] = []
        for candidate in list(root) {
            do {
                try verify(candidate)
                return (candidate, problems)
            } catch {
                problems.append("\(error)")
            }
        }
        return (nil, problems)
    }

    /// Deletes all but the newest `keep` checkpoints (keep ≤ 0 keeps all) and, with `keepEvery` > 0, those of the
    /// steps it divides (milestones for later evaluation).
    public static func prune(_ root: URL, keep: Int, keepEvery: Int = 0) {
        guard keep > 0 else { return }
        for old in list(root).dropFirst(keep) {
            if keepEvery > 0, let step = Int(old.lastPathComponent.dropFirst("step_".count)), step % keepEvery == 0 { continue }
            try? FileManager.default.removeItem(at: old)
        }
    }

    private static func record(of url: URL) throws -> FileRecord {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw KeelError("cannot read \(url.path): \(error.localizedDescription)")
        }
        let hash = data.withUnsafeBytes { XXH64.hash($0) }
        return FileRecord(bytes: data.count, xxh64: String(hash, radix: 16))
    }
}
