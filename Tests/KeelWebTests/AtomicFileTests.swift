import Foundation
import KeelCore
import XCTest

/// Several files replaced together (`keel data filter`'s outputs, `keel data dedup`'s): every one is written before
/// any is renamed, so a failure while writing, or at the first rename, leaves them all as they were, and no
/// temporary file stays behind; one file named twice is refused before anything is written.
final class AtomicFileTests: XCTestCase {
    private func contents(_ url: URL) -> String? { try? String(contentsOf: url, encoding: .utf8) }

    func testAFileNamedTwiceIsRefused() throws {
        let directory = try temporaryDirectory()
        let file = directory.appendingPathComponent("out.jsonl")
        try Data("old".utf8).write(to: file)
        XCTAssertThrowsError(try AtomicFile.writeAll([file, directory.appendingPathComponent("./out.jsonl")]) { _ in
            XCTFail("nothing is written")
        }) { XCTAssertEqual("\($0)", "\(file.path) is named twice among the files to write") }
        XCTAssertEqual(contents(file), "old")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["out.jsonl"])
    }

    /// The first write into a directory removes the temporaries that killed writers on this machine left there (a
    /// quantize stopped by Ctrl-C left gigabytes under a hidden name); a living writer's are left alone.
    func testTheFirstWriteIntoADirectoryRemovesAbandonedTemporaries() throws {
        let directory = try temporaryDirectory()
        let ended = try endedProcessIdentifier()
        let abandoned = directory.appendingPathComponent(".model.gguf.tmp-\(ended)-\(AtomicFile.host)")
        let living = directory.appendingPathComponent(".other.json.tmp-\(getpid())-\(AtomicFile.host)")
        for url in [abandoned, living] { try Data("partial".utf8).write(to: url) }
        try AtomicFile.write(Data("new".utf8), to: directory.appendingPathComponent("config.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: abandoned.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: living.path))
    }

    func testAllFilesAreReplacedTogether() throws {
        let directory = try temporaryDirectory()
        let first = directory.appendingPathComponent("first.txt"), second = directory.appendingPathComponent("second.txt")
        try Data("old first".utf8).write(to: first)
        try AtomicFile.writeAll([first, nil, second]) { handles in
            XCTAssertNil(handles[1])
            try handles[0]!.write(contentsOf: Data("new first".utf8))
            try handles[2]!.write(contentsOf: Data("new second".utf8))
        }
        XCTAssertEqual(contents(first), "new first")
        XCTAssertEqual(contents(second), "new second")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["first.txt", "second.txt"])
    }

    func testAFailureWhileWritingLeavesEveryFileAsItWas() throws {
        let directory = try temporaryDirectory()
        let first = directory.appendingPathComponent("first.txt"), second = directory.appendingPathComponent("second.txt")
        try Data("old first".utf8).write(to: first)
        try Data("old second".utf8).write(to: second)
        XCTAssertThrowsError(try AtomicFile.writeAll([first, second]) { handles in
            try handles[0]!.write(contentsOf: Data("new first".utf8))
            try handles[1]!.write(contentsOf: Data("new second".utf8))
            throw KeelError("bad input at line 3")
        }) { XCTAssertEqual($0 as? KeelError, KeelError("bad input at line 3")) }
        XCTAssertEqual(contents(first), "old first")
        XCTAssertEqual(contents(second), "old second")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["first.txt", "second.txt"])
    }

    /// The renames come after every file is complete, in order: when the first cannot be renamed (its temporary file
    /// is taken away while it is written), the others are not replaced either. Renaming each file as soon as it was
    /// written (the last first) would leave the second file new and the first old.
    func testNoFileIsRenamedBeforeEveryFileIsWritten() throws {
        let directory = try temporaryDirectory()
        let first = directory.appendingPathComponent("first.txt"), second = directory.appendingPathComponent("second.txt")
        try Data("old first".utf8).write(to: first)
        try Data("old second".utf8).write(to: second)
        XCTAssertThrowsError(try AtomicFile.writeAll([first, second]) { handles in
            try handles[0]!.write(contentsOf: Data("new first".utf8))
            try handles[1]!.write(contentsOf: Data("new second".utf8))
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            try FileManager.default.removeItem(at: directory.appendingPathComponent(names.first { $0.hasPrefix(".first.txt.tmp-") }!))
        }) { XCTAssertTrue("\($0)".contains("cannot rename"), "\($0)") }
        XCTAssertEqual(contents(first), "old first")
        XCTAssertEqual(contents(second), "old second")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["first.txt", "second.txt"],
                       "no temporary file is left")
    }

    /// `removingFirst` go once every file is written, before the first rename: renames that stop part-way (here the
    /// first fails) leave the config that says how to read the others missing, not describing their old versions.
    func testTheKeyFileGoesBeforeTheOthersAreRenamed() throws {
        let directory = try temporaryDirectory()
        let weights = directory.appendingPathComponent("weights"), config = directory.appendingPathComponent("config.json")
        try Data("old weights".utf8).write(to: weights)
        try Data("old config".utf8).write(to: config)
        XCTAssertThrowsError(try AtomicFile.writeAll([weights, config], removingFirst: [config]) { handles in
            try handles[0]!.write(contentsOf: Data("new weights".utf8))
            try handles[1]!.write(contentsOf: Data("new config".utf8))
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            try FileManager.default.removeItem(at: directory.appendingPathComponent(names.first { $0.hasPrefix(".weights.tmp-") }!))
        }) { XCTAssertTrue("\($0)".contains("cannot rename"), "\($0)") }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["weights"])
        try AtomicFile.writeAll([weights, config], removingFirst: [config]) { handles in
            try handles[0]!.write(contentsOf: Data("new weights".utf8))
            try handles[1]!.write(contentsOf: Data("new config".utf8))
        }
        XCTAssertEqual([contents(weights), contents(config)], ["new weights", "new config"])
    }

    /// A destination that is a named pipe, a device or a directory is refused before anything is written: renaming a
    /// plain file over it (`--out /dev/null` as root) would replace it, and the output would go nowhere it was meant to.
    func testADestinationThatIsNotARegularFileIsLeftAlone() throws {
        let directory = try temporaryDirectory()
        let pipe = directory.appendingPathComponent("pipe"), folder = directory.appendingPathComponent("folder")
        XCTAssertEqual(mkfifo(pipe.path, 0o600), 0)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        for (url, kind) in [(pipe, "a named pipe"), (folder, "a directory")] {
            XCTAssertThrowsError(try AtomicFile.write(Data("new".utf8), to: url)) {
                XCTAssertEqual("\($0)", "cannot write \(url.path): it exists and is not a regular file (\(kind))")
            }
        }
        var status = stat()
        XCTAssertEqual(stat(pipe.path, &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFIFO, "the pipe is still a pipe")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["folder", "pipe"])
    }

    /// A failed write names the file with the system's reason; with several files open, and no way to tell which
    /// handle failed, it names each rather than charging the first.
    func testAFailedWriteNamesTheFilesItMayBe() throws {
        let directory = try temporaryDirectory()
        let kept = directory.appendingPathComponent("kept.jsonl"), decisions = directory.appendingPathComponent("decisions.tsv")
        XCTAssertThrowsError(try AtomicFile.write(to: kept) { _ in throw POSIXError(.EFBIG) }) {
            XCTAssertEqual("\($0)", "cannot write \(kept.path): File too large")
        }
        XCTAssertThrowsError(try AtomicFile.writeAll([kept, nil, decisions]) { _ in throw POSIXError(.ENOSPC) }) {
            XCTAssertEqual("\($0)", "cannot write one of \(kept.path), \(decisions.path): No space left on device")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
    }

    /// A directory that cannot be made is named, with the system's words, not Foundation's error domain and codes.
    func testADirectoryThatCannotBeMadeIsNamed() throws {
        let file = try temporaryDirectory().appendingPathComponent("file")
        try Data().write(to: file)
        let wanted = file.appendingPathComponent("run")
        XCTAssertThrowsError(try AtomicFile.createDirectory(wanted)) {
            XCTAssertTrue("\($0)".hasPrefix("cannot create directory \(wanted.path): "), "\($0)")
            XCTAssertFalse("\($0)".contains("Domain="), "\($0)")
        }
    }

    /// A directory that cannot be synced is an error, naming it: a rename it holds might not survive a crash, and a
    /// checkpoint counted as written on it could vanish. (It returned quietly before.)
    func testADirectoryThatCannotBeSyncedIsAnError() throws {
        let directory = try temporaryDirectory()
        try AtomicFile.syncDirectory(directory)
        let gone = directory.appendingPathComponent("gone"), file = directory.appendingPathComponent("file")
        try Data().write(to: file)
        for url in [gone, file] {
            XCTAssertThrowsError(try AtomicFile.syncDirectory(url)) {
                XCTAssertTrue("\($0)".contains("cannot open directory \(url.path) to sync it"), "\($0)")
            }
        }
    }
}
