import Foundation
import KeelCheckpoint
import KeelComm
import KeelCore
import KeelModel
import XCTest

/// A snapshot spread over machines — each holding its own rank's file and its buddy's copy — is restored when
/// what survives covers every file, each rank fetching from another machine only the files it needs and lacks;
/// when it does not, the job falls back to disk.
final class SnapshotRecoveryTests: XCTestCase {
    /// An empty directory for a transfer's files, removed after the test.
    private func transferDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-transfer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return directory
    }

    private let config = ModelConfig(architecture: .gpt2, vocabSize: 36, layers: 2, heads: 4, kvHeads: 4, width: 32, maxLength: 8)
    /// Three machines of one rank each: rank 0's copy is kept on machine 1, 1's on 2, 2's on 0 (a ring).
    private static let oneRankEach = [0, 1, 2]
    private func layout(zeroStage: Int, ranks: Int = 3) -> CheckpointLayout {
        CheckpointLayout(pipeline: 1, tensor: 1, data: ranks, virtualStages: 1, zeroStage: zeroStage, stageLayers: [0..<2])
    }

    /// The snapshot `write` makes with one data-parallel rank per entry of `machineOfRank`, laid out on each machine
    /// as training leaves it: its own ranks' files, its buddy copies and the manifest. `lost` machines have an empty
    /// directory (a replacement). One root per machine.
    private func spread(lost: Set<Int> = [], machineOfRank: [Int] = oneRankEach) throws -> [URL] {
        let snapshot = try write(config, layout: layout(zeroStage: 1, ranks: machineOfRank.count))
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("keel-machines-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: base) }
        let placement = MachinePlacement(machineOfRank: machineOfRank, rank: 0)
        return try (0..<placement.count).map { machine in
            let root = base.appendingPathComponent("m\(machine)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            guard !lost.contains(machine) else { return root }
            let directory = root.appendingPathComponent(snapshot.lastPathComponent)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let own = placement.ranks(on: machine), kept = own + own.flatMap { placement.buddied(by: $0) }
            for name in [CheckpointManifest.fileName, CheckpointStore.manifestChecksumName] + kept.map({ ShardPlan.fileName(rank: $0) }) {
                try FileManager.default.copyItem(at: snapshot.appendingPathComponent(name), to: directory.appendingPathComponent(name))
            }
            return root
        }
    }

    /// Restores on the ranks of `machineOfRank` (3 machines of one rank by default) reading as `zeroStage`; checks
    /// every rank's weights (its shard under ZeRO-3) and moments; returns the files fetched (nil: nothing restorable)
    /// and the warnings.
    private func restore(_ roots: [URL], newerThan: Int = -1, zeroStage: Int = 1,
                         machineOfRank: [Int] = oneRankEach) throws -> (fetched: Int?, warnings: [String]) {
        let config = config
        let results = try ThreadCommunicator.run(size: machineOfRank.count) { world -> (Int?, [String]) in
            let table = ParameterTable(config: config)
            let shard = evenPartition(count: table.count, parts: world.size)[world.rank]
            let targets: [(CheckpointKind, Range<Int>?)] = [(.model, zeroStage == 3 ? shard : nil), (.firstMoment, shard), (.secondMoment, shard)]
            var warnings: [String] = []
            let restored = try SnapshotRecovery.restore(
                root: roots[machineOfRank[world.rank]], machines: MachinePlacement(machineOfRank: machineOfRank, rank: world.rank),
                channel: world, newerThan: newerThan,
                needs: { reader in try targets.reduce(into: []) { $0.formUnion(try reader.files(for: $1.0, table: table, only: $1.1)) } },
                warn: { warnings.append($0) })
            guard let restored else { return (nil, warnings) }
            let reader = try CheckpointReader(restored.directory, verify: false)
            for (kind, range) in targets {
                let actual = FloatBuffer(count: table.count), expected = expectedValues(kind, table: table)
                try reader.load(kind, table: table, into: actual.pointer, only: range)
                for i in range ?? 0..<table.count where actual.pointer[i] != expected.pointer[i] {
                    throw KeelError("rank \(world.rank): \(kind) element \(i) is \(actual.pointer[i]), expected \(expected.pointer[i])")
                }
            }
            return (restored.fetchedFiles, warnings)
        }
        XCTAssertEqual(Set(results.map { $0.0 }).count, 1, "the ranks disagree on what was fetched")
        return (results[0].0, results.flatMap(\.1))
    }

    func testEachMachineFetchesTheFilesItLacks() throws {
        // Under ZeRO-1 every rank reads every file's weights: each machine lacks one.
        XCTAssertEqual(try restore(try spread()).fetched, 3)
    }

    func testALostMachineIsRebuiltFromItsBuddies() throws {
        let roots = try spread(lost: [1])
        // Machine 0 lacks rank 1's file, machine 2 rank 0's, and the replacement machine 1 all three.
        XCTAssertEqual(try restore(roots).fetched, 5)
        XCTAssertNotNil(try CheckpointStore.readManifest(roots[1].appendingPathComponent(CheckpointStore.name(step: 3))))
    }

    /// A machine whose copy of the step lost its manifest (a deletion cut short) holds a directory of that step it does
    /// not count as holding: it is replaced, not renamed onto (which failed, on every restart).
    func testAHalfDeletedSnapshotIsReplaced() throws {
        let roots = try spread()
        let directory = roots[1].appendingPathComponent(CheckpointStore.name(step: 3))
        try FileManager.default.removeItem(at: directory.appendingPathComponent(CheckpointManifest.fileName))
        XCTAssertEqual(try restore(roots).fetched, 5)
        XCTAssertNotNil(try CheckpointStore.readManifest(directory))
    }

    func testARankFetchesOnlyWhatItReads() throws {
        // Under ZeRO-3 a rank of the same data-parallel layout reads only its own file: only the replacement fetches.
        XCTAssertEqual(try restore(try spread(lost: [1]), zeroStage: 3).fetched, 1)
    }

    func testADamagedFileIsFetchedAgain() throws {
        let roots = try spread()
        let file = roots[0].appendingPathComponent(CheckpointStore.name(step: 3)).appendingPathComponent(ShardPlan.fileName(rank: 0))
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 5] ^= 0xff
        try bytes.write(to: file)
        XCTAssertEqual(try restore(roots).fetched, 4, "machine 0 fetches its own file back from machine 1")
    }

    /// The ranks of a machine check its files together, each a share (rank 1 of machine 0 the second and fourth
    /// file): a damaged file is found whichever rank's share holds it, and fetched again.
    func testTheRanksOfAMachineShareTheSurvey() throws {
        let machineOfRank = [0, 0, 1, 1]
        let roots = try spread(machineOfRank: machineOfRank)
        XCTAssertEqual(try restore(roots, machineOfRank: machineOfRank).fetched, 0, "every machine holds every file")
        for (machine, rank) in [(0, 3), (1, 0)] {
            let file = roots[machine].appendingPathComponent(CheckpointStore.name(step: 3)).appendingPathComponent(ShardPlan.fileName(rank: rank))
            var bytes = try Data(contentsOf: file)
            bytes[bytes.count - 5] ^= 0xff
            try bytes.write(to: file)
        }
        XCTAssertEqual(try restore(roots, machineOfRank: machineOfRank).fetched, 2,
                       "machine 0 fetches rank 3's file (its second rank's share), machine 1 rank 0's (its first rank's)")
    }

    func testTwoLostNeighboursLoseTheSnapshot() throws {
        // Rank 1's file lived on machines 1 and 2 only.
        let outcome = try restore(try spread(lost: [1, 2]))
        XCTAssertNil(outcome.fetched)
        XCTAssertEqual(outcome.warnings, [])
    }

    func testANewerCheckpointOnDiskWins() throws {
        XCTAssertNil(try restore(try spread(), newerThan: 3).fetched)
    }

    /// Each rank's file reaches its buddy on the other machine, right after it is written; a buddy that cannot make
    /// room for a copy fails (its snapshot is then abandoned) without leaving the sender waiting, and neither does a
    /// rank whose own write failed.
    func testBuddiesSwapTheirFiles() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("keel-buddies-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: base) }
        let directories = ["a", "b"].map { base.appendingPathComponent($0) }
        let files = (0..<2).map { directories[$0].appendingPathComponent(ShardPlan.fileName(rank: $0)) }
        for rank in 0..<2 {
            try FileManager.default.createDirectory(at: directories[rank], withIntermediateDirectories: true)
            try Data((0..<(1000 + 333 * rank)).map { UInt8(truncatingIfNeeded: $0 * (rank + 3)) }).write(to: files[rank])
        }
        /// Every rank's outcome (written or the failure's text), bytes received and longest message sent (in 8-byte
        /// words: 1 for the sizes and answers, the file's words for the file) and whether its channel broke, with `written`
        /// saying whose write succeeded.
        func exchange(written: [Bool]) throws -> [(String, Int, Int, Bool)] {
            try ThreadCommunicator.run(size: 2) { world -> (String, Int, Int, Bool) in
                let channel = WatchedSends(world)
                let copies = BuddyCopy(machines: MachinePlacement(machineOfRank: [0, 1], rank: world.rank), channel: channel)
                let record = try CheckpointStore.record(of: files[world.rank])
                let outcome = copies.exchange(after: written[world.rank] ? .written(record, seconds: 0) : .failed(KeelError("disk full")),
                                              file: files[world.rank])
                let longest = channel.sentCounts.max() ?? 0
                switch outcome {
                case .written: return ("written", copies.receivedBytes, longest, copies.isBroken)
                case .failed(let error): return ("\(error)", copies.receivedBytes, longest, copies.isBroken)
                case .nonFinite: return ("non-finite", copies.receivedBytes, longest, copies.isBroken)
                }
            }
        }
        var outcomes = try exchange(written: [true, true])
        XCTAssertEqual(outcomes.map(\.0), ["written", "written"])
        XCTAssertEqual(outcomes.map(\.1), [1333, 1000])
        XCTAssertEqual(outcomes.map(\.2), [125, 167], "each file goes whole (1000 and 1333 bytes)")
        for rank in 0..<2 {
            XCTAssertEqual(try Data(contentsOf: directories[1 - rank].appendingPathComponent(ShardPlan.fileName(rank: rank))),
                           try Data(contentsOf: files[rank]))
        }
        // Machine b cannot take rank 0's copy (a directory stands where it would be received).
        try FileManager.default.removeItem(at: directories[1].appendingPathComponent(ShardPlan.fileName(rank: 0)))
        try FileManager.default.createDirectory(at: directories[1].appendingPathComponent(".rank_00000.safetensors.receiving"),
                                                withIntermediateDirectories: true)
        outcomes = try exchange(written: [true, true])
        XCTAssertEqual(outcomes[0].0, "written")
        XCTAssertTrue(outcomes[1].0.contains("copying snapshot files between machines"), outcomes[1].0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directories[1].appendingPathComponent(ShardPlan.fileName(rank: 0)).path))
        XCTAssertEqual(outcomes[0].2, 1, "rank 0 does not send the file its buddy has no room for")
        XCTAssertEqual(outcomes.map(\.3), [false, false], "no message failed: later snapshots are copied again")
        // Rank 0's own write failed: it sends nothing, and its buddy does not wait for it.
        try FileManager.default.removeItem(at: directories[1].appendingPathComponent(".rank_00000.safetensors.receiving"))
        outcomes = try exchange(written: [false, true])
        XCTAssertEqual(outcomes.map(\.0), ["disk full", "written"])
        XCTAssertEqual(outcomes.map(\.1), [1333, 0])
    }

    /// A copy whose message failed (here: the buddy never took part, under a timeout of 0.3 s) marks the channel
    /// broken — MPI keeps such a message posted, to be matched with the next exchange's — so that the job takes no
    /// more snapshots; a copy the buddy had no room for, or an exchange that went through, does not.
    func testACopyWhoseMessageFailedBreaksTheChannel() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("keel-broken-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: base) }
        let files = (0..<2).map { base.appendingPathComponent("\($0)").appendingPathComponent(ShardPlan.fileName(rank: $0)) }
        for file in files {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(repeating: 7, count: 800).write(to: file)
        }
        /// Each rank's (outcome written, isBroken) after an exchange that the ranks in `taking` take part in.
        func exchange(taking: Set<Int>) throws -> [[Bool]] {
            try ThreadCommunicator.run(size: 2, timeout: 0.3) { world -> [Bool] in
                let copies = BuddyCopy(machines: MachinePlacement(machineOfRank: [0, 1], rank: world.rank), channel: world)
                guard taking.contains(world.rank) else { return [false, copies.isBroken] }
                let outcome = copies.exchange(after: .written(try CheckpointStore.record(of: files[world.rank]), seconds: 0),
                                              file: files[world.rank])
                if case .written = outcome { return [true, copies.isBroken] }
                return [false, copies.isBroken]
            }
        }
        XCTAssertEqual(try exchange(taking: [0, 1]), [[true, false], [true, false]])
        XCTAssertEqual(try exchange(taking: [0]), [[false, true], [false, false]], "rank 0's messages to its absent buddy failed")
    }

    /// Files move between ranks intact whatever their length, whole or in pieces, with a tag each or all with one
    /// (their pieces then go one file after another); and a receiver that cannot make room says where.
    func testFilesTravelWholeBetweenRanks() throws {
        let directory = try transferDirectory()
        let lengths = [1, 8, 12_345, 3_001]
        for (index, length) in lengths.enumerated() {
            try Data((0..<length).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }).write(to: directory.appendingPathComponent("sent-\(index)"))
        }
        for (wordsPerMessage, sharedTag) in [(1 << 27, false), (100, false), (100, true)] {
            _ = try ThreadCommunicator.run(size: 2) { world in
                let transfer = FileTransfer(wordsPerMessage: wordsPerMessage)
                for (index, length) in lengths.enumerated() {
                    let tag = sharedTag ? 0 : index
                    if world.rank == 0 {
                        try transfer.offer(directory.appendingPathComponent("sent-\(index)"), bytes: length, to: 1, tag: tag)
                    } else {
                        try transfer.expect(directory.appendingPathComponent("received-\(index)"), bytes: length, from: 0, tag: tag)
                    }
                }
                transfer.start(over: world)
                try transfer.finish()
            }
            for index in lengths.indices {
                XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("received-\(index)")),
                               try Data(contentsOf: directory.appendingPathComponent("sent-\(index)")),
                               "file \(index) in messages of \(wordsPerMessage) words, \(sharedTag ? "one tag" : "a tag each")")
                try FileManager.default.removeItem(at: directory.appendingPathComponent("received-\(index)"))
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".") }, [],
                       "no temporary file left behind")
        XCTAssertThrowsError(try FileTransfer().expect(directory.appendingPathComponent("missing/file"), bytes: 10, from: 0, tag: 0)) {
            XCTAssertTrue("\($0)".contains("missing"), "\($0)")
        }
        // A transfer given up before it started (the ranks did not all prepare theirs) puts nothing in place.
        let abandoned = FileTransfer()
        try abandoned.expect(directory.appendingPathComponent("never"), bytes: 100, from: 0, tag: 0)
        try abandoned.finish()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("never") }, [],
                       "neither the file nor its temporary name")
    }

    /// A copy that takes longer than the timeout in all, but whose every message arrives within it, succeeds: a
    /// large snapshot file on a slow link (here 16 pieces, each sent 0.1 s after the one before, under a timeout of
    /// 1 s). Posted all at once, the last pieces' receives would time out.
    func testACopySlowerThanTheTimeoutInAllStillArrives() throws {
        let directory = try transferDirectory()
        let sent = directory.appendingPathComponent("sent"), received = directory.appendingPathComponent("received")
        let length = 16 * 64 * 8
        try Data((0..<length).map { UInt8(truncatingIfNeeded: $0 * 13) }).write(to: sent)
        let began = Date()
        _ = try ThreadCommunicator.run(size: 2, timeout: 1) { world in
            let transfer = FileTransfer(wordsPerMessage: 64)
            if world.rank == 0 {
                try transfer.offer(sent, bytes: length, to: 1, tag: 0)
                transfer.start(over: WatchedSends(world, delay: 0.1))
            } else {
                try transfer.expect(received, bytes: length, from: 0, tag: 0)
                transfer.start(over: world)
            }
            try transfer.finish()
        }
        XCTAssertGreaterThan(Date().timeIntervalSince(began), 1.5, "the copy outlasted the timeout")
        XCTAssertEqual(try Data(contentsOf: received), try Data(contentsOf: sent))
    }

    /// A file whose message failed stays mapped: MPI keeps a receive that timed out posted, and may still write into
    /// the file's pages when the peer comes back; pages freed under it would crash a run that carries on without the
    /// copy. The file itself is not put in place, and its temporary name is gone.
    func testAFailedTransferKeepsItsFileMapped() throws {
        let directory = try transferDirectory()
        let received = directory.appendingPathComponent("received")
        _ = try ThreadCommunicator.run(size: 2, timeout: 0.3) { world in
            guard world.rank == 1 else { return }  // rank 0 never sends
            let transfer = FileTransfer()
            try transfer.expect(received, bytes: 4096, from: 0, tag: 0)
            transfer.start(over: world)
            XCTAssertThrowsError(try transfer.finish()) { XCTAssertTrue("\($0)".contains("never sent"), "\($0)") }
            XCTAssertTrue(transfer.lostMessages, "the channel can carry no more transfers")
        }
        // Read to the end: /proc files report a size of 0.
        let maps = String(decoding: FileHandle(forReadingAtPath: "/proc/self/maps")!.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(maps.contains(directory.appendingPathComponent(".received.receiving").path), "the failed receive's file is mapped")
        XCTAssertFalse(FileManager.default.fileExists(atPath: received.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
    }
}

/// A communicator whose sends are watched: each one's element count is recorded, and it leaves `delay` seconds after
/// it is started (a slow link: the caller waits that long in `start`).
private final class WatchedSends: Communicator, @unchecked Sendable {
    private let inner: any Communicator
    private let delay: Double
    private let lock = NSLock()
    private var counts: [Int] = []

    init(_ inner: any Communicator, delay: Double = 0) {
        self.inner = inner
        self.delay = delay
    }

    /// The element count of every send started, in order.
    var sentCounts: [Int] { lock.withLock { counts } }

    var rank: Int { inner.rank }
    var size: Int { inner.size }
    var timeout: Double { inner.timeout }
    var startedOperations: Int { inner.startedOperations }
    var communicatedBytes: Int { inner.communicatedBytes }

    func start(_ operation: CommunicationOperation) -> CommunicationRequest {
        if case .send(_, let count, _, _) = operation.kind {
            lock.withLock { counts.append(count) }
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        }
        return inner.start(operation)
    }

    func split(color: Int, key: Int) throws -> any Communicator { try inner.split(color: color, key: key) }
    func abort(code: Int32) -> Never { inner.abort(code: code) }
}
