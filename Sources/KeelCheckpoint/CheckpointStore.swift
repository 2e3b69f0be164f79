import Foundation
import KeelCore

/// Checkpoint directories that are either complete and verified or ignored.
///
/// A checkpoint `root/step_00000100/` is written as `root/.step_00000100.partial/`: every rank writes its
/// files there (each fsynced), then world rank 0 writes `manifest.json` (`CheckpointManifest`, with the size
/// and XXH64 of every file) and renames the directory into place. A crash at any moment leaves either no
/// checkpoint or a complete one; a file damaged later is caught by its checksum.
public enum CheckpointStore {
    /// One file's record in `manifest.json`.
    public struct FileRecord: Codable, Equatable, Sendable {
        public let bytes: Int
        public let xxh64: String

        public init(bytes: Int, xxh64: String) {
            self.bytes = bytes
            self.xxh64 = xxh64
        }
    }

    /// The name of the checkpoint directory for `step`.
    public static func name(step: Int) -> String {
        "step_" + String(repeating: "0", count: max(0, 8 - String(step).count)) + String(step)
    }

    /// Where the checkpoint of `step` is written before it is published.
    public static func partialDirectory(root: URL, step: Int) -> URL {
        root.appendingPathComponent("." + name(step: step) + ".partial")
    }

    /// Creates (if needed) the directory the ranks write the checkpoint of `step` into; every rank may call it.
    public static func prepare(root: URL, step: Int) throws -> URL {
        let partial = partialDirectory(root: root, step: step)
        do {
            try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
        } catch {
            throw notWritten(root: root, step: step, because: AtomicFile.systemReason(error))
        }
        return partial
    }

    /// Removes the partial directories a crash left under `root` (before a run writes its first checkpoint).
    public static func removePartials(root: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for name in names where name.hasPrefix(".step_") && name.hasSuffix(".partial") {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(name))
        }
    }

    /// Writes `manifest` last into the partial directory of its step and renames that into place, replacing an
    /// older checkpoint of the same step; on failure removes the partial directory and throws.
    @discardableResult
    public static func publish(_ manifest: CheckpointManifest, root: URL) throws -> URL {
        let final = root.appendingPathComponent(name(step: manifest.step))
        let partial = partialDirectory(root: root, step: manifest.step)
        do {
            try AtomicFile.write(manifest.encoded(), to: partial.appendingPathComponent(CheckpointManifest.fileName))
            if FileManager.default.fileExists(atPath: final.path) { try FileManager.default.removeItem(at: final) }
            try AtomicFile.rename(partial, to: final)
        } catch {
            discard(root: root, step: manifest.step)
            throw notWritten(root: root, step: manifest.step, because: "\(error)")
        }
        return final
    }

    /// Removes what was written of the checkpoint of `step` (a rank failed: nothing half-written stays behind).
    public static func discard(root: URL, step: Int) {
        try? FileManager.default.removeItem(at: partialDirectory(root: root, step: step))
    }

    /// The error for a checkpoint that could not be written, `reason` saying why.
    public static func notWritten(root: URL, step: Int, because reason: String) -> KeelError {
        KeelError("checkpoint \(root.appendingPathComponent(name(step: step)).path) was not written (the previous ones are intact): \(reason)")
    }

    /// The manifest of a sharded checkpoint; nil for a consolidated one (whose manifest lists only its files).
    public static func readManifest(_ directory: URL) throws -> CheckpointManifest? {
        try parseManifest(directory).sharded
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
        let records = try parseManifest(directory).files
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

    /// Where the in-memory snapshots of the run in `runDirectory` are kept under `base` (a tmpfs such as
    /// `/dev/shm/keel`): a directory named after the run and a hash of its absolute path, so runs never share one.
    public static func snapshotRoot(for runDirectory: URL, in base: URL) -> URL {
        let path = runDirectory.standardizedFileURL.path
        let hash = String(XXH64.hash(Array(path.utf8)), radix: 16)
        return base.appendingPathComponent("\(runDirectory.lastPathComponent)-\(hash)")
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

    /// `directory`'s manifest: the files it lists and, for a sharded checkpoint, all of it.
    private static func parseManifest(_ directory: URL) throws -> (files: [String: FileRecord], sharded: CheckpointManifest?) {
        let manifestURL = directory.appendingPathComponent(CheckpointManifest.fileName)
        guard let data = try? Data(contentsOf: manifestURL) else {
            throw KeelError("checkpoint \(directory.path) is incomplete: no manifest.json")
        }
        let format = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["format"] as? String
        do {
            guard let format else { return (try JSONDecoder().decode([String: FileRecord].self, from: data), nil) }
            guard format == CheckpointManifest.currentFormat else {
                throw KeelError("checkpoint \(directory.path) has format \(format), which this Keel cannot read (it reads \(CheckpointManifest.currentFormat))")
            }
            let manifest = try JSONDecoder().decode(CheckpointManifest.self, from: data)
            return (manifest.files, manifest)
        } catch let error as KeelError {
            throw error
        } catch {
            throw KeelError("checkpoint \(directory.path): manifest.json is malformed: \(decodingProblem(error))")
        }
    }

    /// The size and XXH64 of the file at `url`, read in chunks (a mapping would count the whole file in the
    /// process's resident memory).
    public static func record(of url: URL) throws -> FileRecord {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw KeelError("cannot read \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 64)
        defer { chunk.deallocate() }
        var hasher = XXH64(), bytes = 0
        while true {
            let got = read(fd, chunk.baseAddress, chunk.count)
            guard got >= 0 else { throw KeelError("cannot read \(url.path): \(String(cString: strerror(errno)))") }
            if got == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: chunk[..<got]))
            bytes += got
        }
        return FileRecord(bytes: bytes, xxh64: String(hasher.digest(), radix: 16))
    }
}
