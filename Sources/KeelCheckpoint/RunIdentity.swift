import Foundation
import KeelCore

/// A run's identity: a random number its run directory records when the run starts, and which each machine's
/// in-memory snapshot directory records beside its snapshots. The snapshot directory is named after the run
/// directory's path, so a run directory deleted and started again finds the snapshots an earlier run left on a
/// machine's tmpfs (tmpfs outlives a job); without the identity, `--resume-if-any` would take that other run's
/// weights and data position as its own.
public enum RunIdentity {
    /// The file, in the run directory and in each machine's snapshot directory, holding the identity (hexadecimal).
    public static let fileName = "run-id"

    /// The identity recorded in `directory`, if it holds one.
    public static func read(_ directory: URL) -> UInt64? {
        guard let text = try? String(contentsOf: directory.appendingPathComponent(fileName), encoding: .utf8) else { return nil }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16)
    }

    /// Records `identity` in `directory` (created if needed), atomically: a reader sees the old identity or the new.
    public static func write(_ identity: UInt64, to directory: URL) throws {
        do {
            try AtomicFile.createDirectory(directory)
            try Data((String(identity, radix: 16) + "\n").utf8).write(to: directory.appendingPathComponent(fileName), options: .atomic)
        } catch {
            throw KeelError("cannot record the run's identity in \(directory.path): \(error.localizedDescription)")
        }
    }

    /// The identity of the run in `runDirectory`: a new one, recorded there, when the run starts `fresh` or the directory
    /// records none (a run from before identities, or a directory deleted and started again); else the recorded one.
    public static func establish(in runDirectory: URL, fresh: Bool) throws -> UInt64 {
        if !fresh, let recorded = read(runDirectory) { return recorded }
        // A file that is there but not read (a file server's error) is no reason to disown every machine's snapshots.
        let file = runDirectory.appendingPathComponent(fileName)
        if !fresh, FileManager.default.fileExists(atPath: file.path) {
            throw KeelError("cannot read the run's identity from \(file.path); if it is damaged, delete it (this run's in-memory snapshots are then not resumed)")
        }
        let identity = UInt64.random(in: 1...UInt64.max)
        try write(identity, to: runDirectory)
        return identity
    }
}
