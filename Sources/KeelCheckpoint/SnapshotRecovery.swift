import Foundation
import KeelComm
import KeelCore

/// Restoring a job from in-memory snapshots spread over its machines.
///
/// Each machine's snapshot directory holds its own ranks' files of a snapshot and the copies it keeps for its
/// buddy machine (`MachinePlacement`), with the whole snapshot's manifest; no machine has them all. After a
/// failure the job's machines — the same ones, or some replaced by machines with an empty tmpfs — pool what
/// survives: the ranks of each machine check its snapshots' files against their checksums, each a share of the
/// files (a machine holds twice its ranks' share of the model and moments: one rank reading it all would keep the
/// others waiting past the timeout at scale), the ranks share what they found, and the newest snapshot whose every
/// file is intact somewhere is chosen. Then each rank fetches,
/// from a machine that has them, the files it needs (`CheckpointReader.files`) that its own machine lacks, and
/// every rank reads its share from its machine's directory.
public enum SnapshotRecovery {
    /// What a restore found and did.
    public struct Restored: Sendable {
        /// The snapshot, in this machine's snapshot directory.
        public let directory: URL
        /// Files fetched from other machines, by all ranks together, and their bytes.
        public let fetchedFiles: Int
        public let fetchedBytes: Int
    }

    /// The newest snapshot under the machines' `root`s (this machine's is `root`) newer than step `newerThan`
    /// whose every file is intact on some machine, completed on this machine with the files this rank needs —
    /// `needs` says which, given the snapshot — or nil when there is none (or its files cannot be fetched: then
    /// the job resumes from disk, and `warn` says why). Collective over `channel`, a communicator over the whole
    /// job (world ranks) used for nothing else.
    public static func restore(root: URL, machines: MachinePlacement, channel: any Communicator, newerThan: Int,
                               needs: (CheckpointReader) throws -> Set<String>,
                               warn: (String) -> Void) throws -> Restored? {
        // 1. Every machine's ranks survey its snapshots, each its share of the files; every rank learns what each
        // machine holds.
        let neighbours = machines.ranks(on: machines.machine)
        let mine = survey(root, share: (neighbours.firstIndex(of: channel.rank)!, neighbours.count))
        var report: [Int64] = [Int64(mine.count)]
        for snapshot in mine {
            report += [Int64(snapshot.step), Int64(snapshot.files), Int64(snapshot.intact.count)] + snapshot.intact.map { $0 ? 1 : 0 }
        }
        let reports = try gatherVariable(report, over: channel)
        var holdings: [Int: [Int: [Bool]]] = [:]  // step → machine → intact flags of its files (sorted by name)
        for machine in 0..<machines.count {
            let ranks = machines.ranks(on: machine)
            // step → (files, each rank's share of flags): a step counts when every rank of the machine surveyed it.
            var shares: [Int: (files: Int, flags: [[Bool]])] = [:]
            for rank in ranks {
                let values = reports[rank]
                var at = 1
                for _ in 0..<Int(values[0]) {
                    let step = Int(values[at]), files = Int(values[at + 1]), count = Int(values[at + 2])
                    let flags = values[(at + 3)..<(at + 3 + count)].map { $0 != 0 }
                    at += 3 + count
                    if shares[step] == nil { shares[step] = (files, []) }
                    if shares[step]!.files == files { shares[step]!.flags.append(flags) }
                }
            }
            for (step, share) in shares where share.flags.count == ranks.count {
                var intact = [Bool](repeating: false, count: share.files)
                for (position, flags) in share.flags.enumerated() {
                    for (n, ok) in flags.enumerated() { intact[position + n * ranks.count] = ok }
                }
                holdings[step, default: [:]][machine] = intact
            }
        }
        // 2. The newest step whose every file survives somewhere.
        let complete = holdings.filter { _, byMachine in
            let counts = Set(byMachine.values.map(\.count))
            return counts.count == 1 && (0..<counts.first!).allSatisfy { file in byMachine.values.contains { $0[file] } }
        }
        guard let step = complete.keys.filter({ $0 > newerThan }).max() else { return nil }
        let holders = complete[step]!
        let directory = root.appendingPathComponent(CheckpointStore.name(step: step))

        // 3. A machine without the snapshot (a replacement, or one whose tmpfs was cleared) gets its manifest.
        let source = machines.leader(of: holders.keys.min()!)
        var manifest: [UInt8] = []
        if channel.rank == source {
            do { manifest = [UInt8](try Data(contentsOf: directory.appendingPathComponent(CheckpointManifest.fileName))) } catch {
                StandardStreams.error("rank \(channel.rank): warning: cannot read the manifest of the in-memory snapshot \(directory.path) (\(error.localizedDescription)): resuming without it\n")
            }
        }
        manifest = try broadcastBytes(manifest, from: source, over: channel)
        // Empty: the source could not read it (a manifest never is). Every rank gives the snapshot up alike, rather than
        // those of machines without it failing to read an empty one while the others wait for them.
        guard !manifest.isEmpty else {
            warn("the in-memory snapshot of step \(step) was given up: machine \(machines.machineOfRank[source])'s copy of its manifest could not be read (rank \(source) says why)")
            return nil
        }
        if machines.isMachineLeader, holders[machines.machine] == nil {
            try AtomicFile.createDirectory(root)
            let partial = try CheckpointStore.prepare(root: root, step: step)
            try CheckpointStore.writeManifest(Data(manifest), into: partial)
            // A directory of that step this machine does not count as holding — half deleted (no manifest), or one
            // its survey could not read — would make the rename fail on every restart: it goes, and what it held
            // is fetched like any missing file.
            if FileManager.default.fileExists(atPath: directory.path) { try FileManager.default.removeItem(at: directory) }
            try AtomicFile.rename(partial, to: directory)
        }
        try channel.barrier(label: "snapshot \(step): manifest on every machine")

        // 4. What each rank needs, shared; the files a machine needs and lacks, fetched from one that has them.
        let reader = try CheckpointReader(directory, verify: false)
        guard let records = reader.manifest?.files else { return nil }
        let names = records.keys.sorted()
        let needed = try needs(reader)
        let words = (names.count + 63) / 64
        var bits = [Int64](repeating: 0, count: words)
        for (index, name) in names.enumerated() where needed.contains(name) { bits[index / 64] |= 1 << Int64(index % 64) }
        let allBits = try channel.allGather(bits, label: "snapshot \(step): files each rank needs")
        let wants = { (rank: Int, file: Int) in allBits[rank * words + file / 64] & (1 << Int64(file % 64)) != 0 }
        let transfer = FileTransfer()
        var fetched = (files: 0, bytes: 0), failure: String?, received: [String] = []
        for machine in 0..<machines.count {
            let here = holders[machine]
            for (file, name) in names.enumerated() where here?[file] != true {
                guard let receiver = machines.ranks(on: machine).first(where: { wants($0, file) }) else { continue }
                let holder = holders.keys.sorted().first { holders[$0]![file] }!
                let senders = machines.ranks(on: holder), sender = senders[file % senders.count]
                let bytes = records[name]!.bytes
                fetched = (fetched.files + 1, fetched.bytes + bytes)
                do {
                    if channel.rank == sender {
                        try transfer.offer(directory.appendingPathComponent(name), bytes: bytes, to: receiver, tag: file)
                    }
                    if channel.rank == receiver {
                        received.append(name)
                        try transfer.expect(directory.appendingPathComponent(name), bytes: bytes, from: sender, tag: file)
                    }
                } catch {
                    failure = failure ?? "\(error)"
                }
            }
        }
        // Nothing is sent unless every rank could prepare its part.
        if try !agree(failure == nil, over: channel, label: "snapshot \(step): files prepared") {
            try? transfer.finish()
            warn("the in-memory snapshot of step \(step) cannot be gathered (\(failure ?? "another rank failed to prepare its files")); resuming from disk")
            return nil
        }
        transfer.start(over: channel)
        try transfer.finish()
        // The files this rank received, checked against the manifest.
        for name in received {
            let url = directory.appendingPathComponent(name)
            guard let actual = try? CheckpointStore.record(of: url), actual == records[name] else {
                failure = failure ?? "\(url.path) does not match its manifest record"
                break
            }
        }
        if try !agree(failure == nil, over: channel, label: "snapshot \(step): files verified") {
            warn("the in-memory snapshot of step \(step) cannot be used (\(failure ?? "another rank found a damaged file")); resuming from disk")
            return nil
        }
        return Restored(directory: directory, fetchedFiles: fetched.files, fetchedBytes: fetched.bytes)
    }

    /// One published snapshot on this machine: its step, how many files its manifest lists, and for each file of a
    /// share of them (the i-th, (i + n)-th, … sorted by name) whether it is here with its recorded size and checksum.
    struct Holding {
        let step: Int
        let files: Int
        let intact: [Bool]
    }

    /// The published snapshots under `root`, newest first, with `share` of their files checked (a snapshot whose
    /// manifest cannot be read is left out).
    static func survey(_ root: URL, share: (index: Int, count: Int)) -> [Holding] {
        CheckpointStore.list(root).compactMap { directory in
            guard let found = try? CheckpointStore.inspectCounting(directory, share: share),
                  let step = CheckpointStore.step(of: directory) else { return nil }
            return Holding(step: step, files: found.files, intact: found.statuses.map { $0.problem == nil })
        }
    }

    /// Whether `ok` holds on every rank.
    private static func agree(_ ok: Bool, over channel: any Communicator, label: String) throws -> Bool {
        try channel.allReduce([ok ? 0.0 : 1.0], .max, label: label)[0] == 0
    }

    /// Every rank's `values` (of any length), in rank order.
    private static func gatherVariable(_ values: [Int64], over channel: any Communicator) throws -> [[Int64]] {
        let lengths = try channel.allGather([Int64(values.count)], label: "snapshot survey sizes").map(Int.init)
        var all = [Int64](repeating: 0, count: lengths.reduce(0, +))
        let start = lengths[..<channel.rank].reduce(0, +)
        all.replaceSubrange(start..<(start + values.count), with: values)
        try all.withUnsafeMutableBufferPointer { try channel.allGather($0.baseAddress!, counts: lengths, label: "snapshot survey") }
        var offset = 0
        return lengths.map { length in
            defer { offset += length }
            return Array(all[offset..<(offset + length)])
        }
    }

    /// `bytes` of rank `root`, on every rank.
    private static func broadcastBytes(_ bytes: [UInt8], from root: Int, over channel: any Communicator) throws -> [UInt8] {
        var length = [Int64(bytes.count)]
        try length.withUnsafeMutableBufferPointer { try channel.broadcast($0, root: root, label: "snapshot manifest size") }
        var words = [Int64](repeating: 0, count: max(1, (Int(length[0]) + 7) / 8))
        words.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }
        try words.withUnsafeMutableBufferPointer { try channel.broadcast($0, root: root, label: "snapshot manifest") }
        return words.withUnsafeBytes { Array($0.prefix(Int(length[0]))) }
    }
}
