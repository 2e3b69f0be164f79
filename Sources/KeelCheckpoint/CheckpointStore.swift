import Foundation
import KeelCore

/// Checkpoint directories that are either complete and verified or ignored.
///
/// A checkpoint `root/step_00000100/` is written as `root/.step_00000100.partial/`: every rank writes its
/// files there (each fsynced), then world rank 0 writes `manifest.json` (`CheckpointManifest`, with the size
/// and XXH64 of every file; its own XXH64 beside it in `manifest.json.xxh64`) and renames the directory into place.
/// A crash at any moment leaves either no checkpoint or a complete one; a file damaged later is caught by its
/// checksum.
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

    /// The step of the checkpoint directory at `directory` (named by `name(step:)`), nil for any other name.
    public static func step(of directory: URL) -> Int? {
        let name = directory.lastPathComponent
        guard name.hasPrefix("step_"), let step = Int(name.dropFirst("step_".count)), step >= 0 else { return nil }
        return step
    }

    /// Where the checkpoint of `step` is written before it is published.
    public static func partialDirectory(root: URL, step: Int) -> URL {
        root.appendingPathComponent("." + name(step: step) + ".partial")
    }

    /// Creates (if needed) the directory the ranks write the checkpoint of `step` into; every rank may call it.
    public static func prepare(root: URL, step: Int) throws -> URL {
        let partial = partialDirectory(root: root, step: step)
        do {
            try AtomicFile.createDirectory(partial)
        } catch {
            throw notWritten(root: root, step: step, because: AtomicFile.systemReason(error))
        }
        return partial
    }

    /// Removes the partial directories a crash left under `root` (before a run writes its first checkpoint), and the
    /// checkpoints set aside for deletion (`setAside`).
    public static func removePartials(root: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for name in names where name.hasPrefix(".step_") && name.hasSuffix(".partial") {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(name))
        }
    }

    /// The file beside `manifest.json` holding the XXH64 of its bytes (hexadecimal): the manifest holds the training
    /// state — step, samples read, seed — which no other checksum covers. Checkpoints written before it existed have
    /// none, and their manifests are read unchecked.
    public static let manifestChecksumName = "manifest.json.xxh64"

    /// What `manifestChecksumName` holds for a manifest of `bytes`.
    private static func manifestChecksum(_ bytes: Data) -> String {
        bytes.withUnsafeBytes { String(XXH64.hash($0), radix: 16) }
    }

    /// Writes `bytes` as `directory`'s manifest.json, and its checksum beside it (`manifestChecksumName`).
    public static func writeManifest(_ bytes: Data, into directory: URL) throws {
        try AtomicFile.write(Data(manifestChecksum(bytes).utf8),
                             to: directory.appendingPathComponent(manifestChecksumName))
        try AtomicFile.write(bytes, to: directory.appendingPathComponent(CheckpointManifest.fileName))
    }

    /// Writes `manifest` last into the partial directory of its step and renames that into place, replacing an
    /// older checkpoint of the same step; on failure removes the partial directory and throws.
    @discardableResult
    public static func publish(_ manifest: CheckpointManifest, root: URL) throws -> URL {
        let final = root.appendingPathComponent(name(step: manifest.step))
        let partial = partialDirectory(root: root, step: manifest.step)
        var replaced: URL?
        do {
            try writeManifest(manifest.encoded(), into: partial)
            replaced = FileManager.default.fileExists(atPath: final.path) ? try setAside(final) : nil
            try AtomicFile.rename(partial, to: final)
            if let replaced { try? FileManager.default.removeItem(at: replaced) }
        } catch {
            // The checkpoint it was to replace goes back (the error says the previous ones are intact).
            if let replaced, !FileManager.default.fileExists(atPath: final.path) { try? AtomicFile.rename(replaced, to: final) }
            discard(root: root, step: manifest.step)
            throw notWritten(root: root, step: manifest.step, because: "\(error)")
        }
        return final
    }

    /// Renames checkpoint `directory` to a hidden name that `removePartials` sweeps, and returns that name: deleting a
    /// checkpoint's files takes a while, and one deleted in place and interrupted would stay behind half-deleted, a
    /// damaged checkpoint every later resume warns about. A rename is atomic.
    private static func setAside(_ directory: URL) throws -> URL {
        let aside = asideName(of: directory)
        try? FileManager.default.removeItem(at: aside)
        try AtomicFile.rename(directory, to: aside)
        return aside
    }

    private static func asideName(of directory: URL) -> URL {
        directory.deletingLastPathComponent().appendingPathComponent("." + directory.lastPathComponent + ".removed.partial")
    }

    /// Deletes what a `remove` of `directory` that was interrupted (a job killed as it ended) left set aside, where no
    /// `removePartials` looks: a machine's snapshots, set aside beside their directory, hold a whole share of the
    /// run's state in memory (tmpfs).
    public static func removeSetAside(_ directory: URL) {
        try? FileManager.default.removeItem(at: asideName(of: directory))
    }

    /// Removes checkpoint `directory` (or a directory of them, a machine's snapshots): set aside by a rename, at once,
    /// then deleted (`setAside`).
    public static func remove(_ directory: URL) {
        guard let aside = try? setAside(directory) else { return }
        try? FileManager.default.removeItem(at: aside)
    }

    /// Removes what was written of the checkpoint of `step` (a rank failed: nothing half-written stays behind).
    public static func discard(root: URL, step: Int) {
        try? FileManager.default.removeItem(at: partialDirectory(root: root, step: step))
    }

    /// The error for a checkpoint that could not be written, `reason` saying why.
    public static func notWritten(root: URL, step: Int, because reason: String) -> KeelError {
        KeelError("checkpoint \(root.appendingPathComponent(name(step: step)).path) was not written (the previous ones are intact): \(reason)")
    }

    /// Whether `directory` holds a readable manifest that passes its checksum (its files are not read: a
    /// checkpoint that has one was published whole, and only its files' hashes can still fail).
    public static func hasManifest(_ directory: URL) -> Bool {
        (try? parseManifest(directory)) != nil
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
    /// when there is no readable manifest. With `share` (index i of n), only the i-th, (i + n)-th, … file in name
    /// order: ranks that check a checkpoint together each read their share of its bytes.
    public static func inspect(_ directory: URL, share: (index: Int, count: Int) = (0, 1)) throws -> [FileStatus] {
        try inspectCounting(directory, share: share).statuses
    }

    /// `inspect`, and how many files the manifest lists (what the shares together cover), from one reading of it.
    public static func inspectCounting(_ directory: URL, share: (index: Int, count: Int)) throws -> (files: Int, statuses: [FileStatus]) {
        let records = try parseManifest(directory).files
        return (records.count, try check(records, in: directory, share: share))
    }

    /// `inspect` of the files `records` lists.
    private static func check(_ records: [String: FileRecord], in directory: URL, share: (index: Int, count: Int)) throws -> [FileStatus] {
        let records = records.sorted(by: { $0.key < $1.key })
        return try stride(from: share.index, to: records.count, by: share.count).map { records[$0] }.map { file, expected in
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
        try verify(directory, share: (0, 1)) { $1 }
    }

    /// `verify` by the ranks of a group together, each checking `share` of the files; `agree` gets whether this rank
    /// found a fault and returns whether any did (a reduction over the group), as in `latestValid(in:share:agree:)`.
    public static func verify(_ directory: URL, share: (index: Int, count: Int),
                              agree: (_ candidate: URL, _ damaged: Bool) throws -> Bool) throws {
        let fault = fault(of: directory, share: share)
        if try agree(directory, fault != nil) {
            throw KeelError(fault?.message ?? "checkpoint \(directory.path) is damaged (the rank whose share of its files holds the fault names it)")
        }
    }

    /// What is wrong with `directory` as its manifest and `share` of its files show it (nil: nothing), and whether
    /// every rank meets it (the manifest's fault) or only the one whose share holds the file.
    private static func fault(of directory: URL, share: (index: Int, count: Int) = (0, 1)) -> (message: String, everyRank: Bool)? {
        let records: [String: FileRecord]
        do { records = try parseManifest(directory).files } catch { return ("\(error)", true) }
        do {
            return try check(records, in: directory, share: share).compactMap(\.problem).first
                .map { ("checkpoint \(directory.path) is damaged: \($0)", false) }
        } catch {
            return ("\(error)", false)
        }
    }

    /// Complete checkpoint directories under `root`, newest step first (by number: past step 99,999,999 the names
    /// grow a digit and no longer sort as text).
    public static func list(_ root: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.map { root.appendingPathComponent($0) }.compactMap { url in step(of: url).map { (url, $0) } }
            .sorted { $0.1 > $1.1 }.map(\.0)
    }

    /// The newest checkpoint under `root` that verifies, and a message for each newer one that did not.
    public static func latestValid(in root: URL) -> (checkpoint: URL?, problems: [String]) {
        let found = latestValid(in: root, share: (0, 1)) { $1 }
        return (found.checkpoint, found.problems.map(\.message))
    }

    /// `latestValid(in:)` searched by ranks together: each checks its `share` of every candidate's files (so that no
    /// rank reads a large model's every byte while the others wait), and `agree` turns whether this rank found a
    /// candidate damaged into whether any rank did. Each problem says whether every rank met it (a manifest's fault)
    /// or only this one (a file of its share).
    public static func latestValid(in root: URL, share: (index: Int, count: Int),
                                   agree: (_ candidate: URL, _ damaged: Bool) throws -> Bool) rethrows
        -> (checkpoint: URL?, problems: [(message: String, everyRank: Bool)]) {
        var problems: [(message: String, everyRank: Bool)] = []
        for candidate in list(root) {
            let fault = fault(of: candidate, share: share)
            if let fault { problems.append(fault) }
            if try !agree(candidate, fault != nil) { return (candidate, problems) }
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

    /// After the checkpoint of step `written` is published: deletes all but the newest `keep` checkpoints up to that
    /// step (keep ≤ 0 keeps all) and, with `keepEvery` > 0, those of the steps it divides (milestones for later
    /// evaluation). Checkpoints of later steps are neither counted nor deleted: the run resumed from before them,
    /// having found them damaged or unreachable (a snapshot on a lost machine), so counting them could delete every
    /// checkpoint it can resume from, the one just written included.
    public static func prune(_ root: URL, keep: Int, keepEvery: Int = 0, written: Int) {
        guard keep > 0 else { return }
        let candidates = list(root).filter { step(of: $0)! <= written }
        for old in candidates.dropFirst(keep) {
            if keepEvery > 0, step(of: old)! % keepEvery == 0 { continue }
            remove(old)
        }
    }

    /// The checkpoints under `root` of later steps than `step`.
    public static func list(_ root: URL, after step: Int) -> [URL] {
        list(root).filter { self.step(of: $0)! > step }
    }

    /// `directory`'s manifest: the files it lists and, for a sharded checkpoint, all of it.
    private static func parseManifest(_ directory: URL) throws -> (files: [String: FileRecord], sharded: CheckpointManifest?) {
        let manifestURL = directory.appendingPathComponent(CheckpointManifest.fileName)
        guard let data = try? Data(contentsOf: manifestURL) else {
            throw KeelError("checkpoint \(directory.path) is incomplete: no manifest.json")
        }
        let recorded = try recordedManifestChecksum(in: directory)
        if let recorded, recorded != manifestChecksum(data) {
            throw KeelError("checkpoint \(directory.path) is damaged: manifest.json does not match its checksum in \(manifestChecksumName) "
                            + "(\(recorded.prefix(32)) recorded, \(manifestChecksum(data)) computed)")
        }
        let format = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["format"] as? String
        do {
            guard let format else { return (try JSONDecoder().decode([String: FileRecord].self, from: data), nil) }
            guard CheckpointManifest.readableFormats.contains(format) else {
                throw KeelError("checkpoint \(directory.path) has format \(format), which this Keel cannot read (it reads \(CheckpointManifest.readableFormats.joined(separator: " and ")))")
            }
            // Only manifests of the format before may predate their checksum file.
            guard recorded != nil || format != CheckpointManifest.currentFormat else {
                throw KeelError("checkpoint \(directory.path) is damaged: \(manifestChecksumName), the checksum of its manifest, is missing")
            }
            let manifest = try JSONDecoder().decode(CheckpointManifest.self, from: data)
            do { try manifest.validate() } catch let error as KeelError {
                throw KeelError("checkpoint \(directory.path) is damaged: its manifest's \(error.message)")
            }
            // The step is written three times (the manifest, its training state, the directory's name): they agree,
            // or the manifest was damaged in a way that still parses.
            guard manifest.state.step == manifest.step, step(of: directory).map({ $0 == manifest.step }) ?? true else {
                throw KeelError("checkpoint \(directory.path) is damaged: its manifest says step \(manifest.step), its training state step \(manifest.state.step)"
                                + (step(of: directory).map { ", its name step \($0)" } ?? ""))
            }
            return (manifest.files, manifest)
        } catch let error as KeelError {
            throw error
        } catch {
            throw KeelError("checkpoint \(directory.path): manifest.json is malformed: \(decodingProblem(error))")
        }
    }

    /// The checksum recorded in `directory`'s `manifestChecksumName`, nil when there is no such file; a file that is
    /// there but cannot be read is an error (not taken for one that is not there, which skips the check).
    private static func recordedManifestChecksum(in directory: URL) throws -> String? {
        let url = directory.appendingPathComponent(manifestChecksumName)
        var status = stat()
        if stat(url.path, &status) != 0 && errno == ENOENT { return nil }
        let contents: Data
        do { contents = try Data(contentsOf: url) } catch {
            throw KeelError("checkpoint \(directory.path) is damaged: cannot read \(manifestChecksumName) (\(error.localizedDescription))")
        }
        guard let text = String(data: contents, encoding: .utf8) else {
            throw KeelError("checkpoint \(directory.path) is damaged: \(manifestChecksumName) is not text")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
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
