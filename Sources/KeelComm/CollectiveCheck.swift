import Foundation
import KeelCore

/// Self-checks and timings of every communicator operation across a job (what `keel collectives` runs,
/// in the spirit of nccl-tests): each rank fills buffers from a formula of (rank, index), runs the
/// operation, and compares the result with the formula's exact answer.
public enum CollectiveCheck {
    /// Rank r's value at index i: small integers, so every sum is exact in Float.
    static func value(rank: Int, index: Int) -> Float {
        Float((rank + 1) * (index % 7 + 1))
    }

    /// Runs every operation once on `elements` floats per rank and throws at the first wrong value; returns
    /// the names of the checks that passed.
    public static func verify(_ comm: any Communicator, elements: Int) throws -> [String] {
        let n = comm.size, r = comm.rank
        var passed: [String] = []
        func expect(_ name: String, _ actual: [Float], _ expected: (Int) -> Float) throws {
            for (i, x) in actual.enumerated() where x != expected(i) {
                throw KeelError("\(name): rank \(r) element \(i) is \(x), expected \(expected(i))")
            }
            passed.append(name)
        }
        let rankSum = Float(n * (n + 1) / 2)
        func filled(_ count: Int, rank: Int) -> [Float] { (0..<count).map { value(rank: rank, index: $0) } }

        var buffer = filled(elements, rank: r)
        try buffer.withUnsafeMutableBufferPointer { try comm.allReduce($0, .sum) }
        try expect("all-reduce sum", buffer) { rankSum * Float($0 % 7 + 1) }

        buffer = filled(elements, rank: r)
        try buffer.withUnsafeMutableBufferPointer { try comm.allReduce($0, .average) }
        try expect("all-reduce average", buffer) { rankSum / Float(n) * Float($0 % 7 + 1) }

        buffer = filled(elements, rank: r)
        try buffer.withUnsafeMutableBufferPointer { try comm.allReduce($0, .max) }
        try expect("all-reduce max", buffer) { value(rank: n - 1, index: $0) }

        let doubles = try comm.allReduce([Double(r), 1], .sum)
        try expect("all-reduce of doubles", doubles.map(Float.init)) { $0 == 0 ? Float(n * (n - 1) / 2) : Float(n) }

        // Uneven blocks (ZeRO shards of a bucket): rank k's block is counts[k] long, one of them empty.
        let counts = (0..<n).map { k in k == 1 ? 0 : elements / n + k }
        let total = counts.reduce(0, +)
        let offsets = counts.indices.map { counts[..<$0].reduce(0, +) }
        let source = filled(total, rank: r)
        var block = [Float](repeating: -1, count: max(counts[r], 1))
        try source.withUnsafeBufferPointer { s in
            try block.withUnsafeMutableBufferPointer { b in
                try comm.reduceScatter(s.baseAddress!, into: b.baseAddress!, counts: counts, .sum)
            }
        }
        try expect("reduce-scatter", Array(block.prefix(counts[r]))) { rankSum * Float((offsets[r] + $0) % 7 + 1) }

        var gathered = [Float](repeating: -1, count: total)
        for i in 0..<counts[r] { gathered[offsets[r] + i] = value(rank: r, index: offsets[r] + i) }
        try gathered.withUnsafeMutableBufferPointer { try comm.allGather($0.baseAddress!, counts: counts) }
        let owner = { (i: Int) in counts.indices.first { offsets[$0] <= i && i < offsets[$0] + counts[$0] }! }
        try expect("all-gather", gathered) { value(rank: owner($0), index: $0) }

        let mine = (0..<max(counts[r], 1)).map { value(rank: r, index: offsets[r] + $0) }
        var collected = [Float](repeating: -1, count: total)
        try mine.withUnsafeBufferPointer { m in
            try collected.withUnsafeMutableBufferPointer { c in
                try comm.gather(m.baseAddress!, into: r == 0 ? c.baseAddress! : nil, counts: counts, root: 0)
            }
        }
        if r == 0 {
            try expect("gather", collected) { value(rank: owner($0), index: $0) }
        } else {
            passed.append("gather")
        }

        let root = n - 1
        buffer = filled(elements, rank: r)
        try buffer.withUnsafeMutableBufferPointer { try comm.broadcast($0, root: root) }
        try expect("broadcast", buffer) { value(rank: root, index: $0) }

        // A ring: send to the next rank, receive from the previous, both in flight at once.
        if n > 1 {
            let outgoing = filled(elements, rank: r)
            var incoming = [Float](repeating: -1, count: elements)
            // Buffers are only valid inside these closures, so the requests are waited on there.
            try outgoing.withUnsafeBufferPointer { o in
                try incoming.withUnsafeMutableBufferPointer { i in
                    let sent = comm.startSend(o, to: (r + 1) % n, tag: 3)
                    let received = comm.startReceive(i, from: (r + n - 1) % n, tag: 3)
                    try sent.wait()
                    try received.wait()
                }
            }
            try expect("send/receive ring", incoming) { value(rank: (r + n - 1) % n, index: $0) }
        }

        // Messages too large to be sent eagerly (a pipeline's activations): every rank sends to both neighbours
        // before receiving from them. Each send completes only once its receive is posted, so this deadlocks
        // unless a rank's sends and receives progress side by side.
        if n > 1 {
            let large = 1 << 21
            let outgoing = (0..<large).map { Float(($0 &* 31 &+ r) % 1000) }
            var fromPrevious = [Float](repeating: -1, count: large), fromNext = fromPrevious
            try outgoing.withUnsafeBufferPointer { o in
                try fromPrevious.withUnsafeMutableBufferPointer { p in
                    try fromNext.withUnsafeMutableBufferPointer { q in
                        let requests = [comm.startSend(o, to: (r + 1) % n, tag: 5), comm.startSend(o, to: (r + n - 1) % n, tag: 6),
                                        comm.startReceive(p, from: (r + n - 1) % n, tag: 5),
                                        comm.startReceive(q, from: (r + 1) % n, tag: 6)]
                        for request in requests { try request.wait() }
                    }
                }
            }
            try expect("large crossing sends", fromPrevious) { Float(($0 &* 31 &+ (r + n - 1) % n) % 1000) }
        }

        // Two non-blocking all-reduces in flight together.
        var first = filled(elements, rank: r), second = filled(elements, rank: r)
        try first.withUnsafeMutableBufferPointer { f in
            try second.withUnsafeMutableBufferPointer { s in
                let a = comm.startAllReduce(f, .sum), b = comm.startAllReduce(s, .max)
                try a.wait()
                try b.wait()
            }
        }
        try expect("non-blocking all-reduces", first) { rankSum * Float($0 % 7 + 1) }
        try expect("non-blocking all-reduces (second)", second) { value(rank: n - 1, index: $0) }

        // Two communicators' collectives progress independently: rank 0 starts one on the first and then waits for
        // one on the second, which the other ranks run first and only then join the first. A rank that ran its
        // collectives one after another, whatever their communicator, would wait in the first for ever.
        if n > 1 {
            let other = try comm.split(color: 0, key: r)
            var early = filled(elements, rank: r), late = filled(elements, rank: r)
            try early.withUnsafeMutableBufferPointer { e in
                try late.withUnsafeMutableBufferPointer { l in
                    if r == 0 {
                        let started = comm.startAllReduce(e, .sum, label: "independent communicators: first")
                        try other.allReduce(l, .max, label: "independent communicators: second")
                        try started.wait()
                    } else {
                        try other.allReduce(l, .max, label: "independent communicators: second")
                        try comm.allReduce(e, .sum, label: "independent communicators: first")
                    }
                }
            }
            try expect("independent communicators", early) { rankSum * Float($0 % 7 + 1) }
            try expect("independent communicators (second)", late) { value(rank: n - 1, index: $0) }
        }

        // Sub-groups from a mesh: with 2-way tensor parallelism the data-parallel groups are the even and
        // the odd ranks, which reduce separately.
        let mesh = try Mesh(worldSize: n, tensor: n % 2 == 0 ? 2 : 1)
        let group = try mesh.communicator(.data, from: comm)
        buffer = filled(elements, rank: r)
        try buffer.withUnsafeMutableBufferPointer { try group.allReduce($0, .sum) }
        let groupSum = Float(mesh.group(.data, containing: r).map { $0 + 1 }.reduce(0, +))
        try expect("mesh sub-groups", buffer) { groupSum * Float($0 % 7 + 1) }

        // ParallelState's groups: every pipeline layout this job size allows (all stages; 2 stages × the rest
        // data parallel). Each group reduces exactly its mesh members; only the two end stages share an
        // embedding group.
        // (An array, not a Set: every rank must build the layouts in the same order.)
        for stages in (n % 2 == 0 && n > 2 ? [n, 2] : [n]) where stages > 1 {
            let state = try ParallelState(mesh: Mesh(worldSize: n, pipeline: stages), world: comm)
            for (axis, group) in [(Mesh.Axis.pipeline, state.pipeline), (.data, state.data), (.tensor, state.tensor)] {
                let members = state.mesh.group(axis, containing: r)
                let sum = try group.allReduce([Double(r + 1)], .sum)[0]
                guard group.size == members.count, sum == Double(members.map { $0 + 1 }.reduce(0, +)) else {
                    throw KeelError("parallel state: rank \(r)'s \(axis) group (pipeline \(stages)) is not \(members)")
                }
            }
            let ends = state.mesh.embeddingGroups().first { $0.contains(r) }
            guard (state.embedding == nil) == (ends == nil) else {
                throw KeelError("parallel state: rank \(r) \(ends == nil ? "has" : "lacks") an embedding group")
            }
            if let embedding = state.embedding, let ends {
                let sum = try embedding.allReduce([Double(r + 1)], .sum)[0]
                guard sum == Double(ends.map { $0 + 1 }.reduce(0, +)) else {
                    throw KeelError("parallel state: rank \(r)'s embedding group is not \(ends)")
                }
            }
        }
        passed.append("parallel state groups")

        try comm.barrier()
        passed.append("barrier")
        return passed
    }

    /// Checks that a rank that keeps communicating is waited for past the timeout, however long it takes:
    /// rank 1 sends rank 0 a message every third of `timeout` for seven of them while rank 0 waits for the
    /// one after (a receive), then again while every other rank waits for it in an all-reduce; and one that works
    /// alone (`Communicator.workingAlone`, as rank 0 writing a checkpoint for all) for 2½ timeouts, communicating
    /// nothing, while the others wait for it in an all-reduce. Returns the three waits' seconds on this rank (about
    /// 2⅓, 2⅓ and 2½ timeouts on the waiting ranks). Only for a communicator whose hang detection watches progress
    /// (MPI); takes about eight timeouts.
    public static func verifyPatience(_ comm: any Communicator, timeout: Double) throws -> [Double] {
        guard comm.size > 1 else { return [] }
        let rounds = 7, pause = timeout / 3
        /// Rank 1 sends `rounds` messages with `tag`, one every `pause`; rank 0 receives them. Rank 0 returns
        /// the receives, still in flight.
        func trickle(tag: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws -> [CommunicationRequest] {
            switch comm.rank {
            case 0:
                return (0..<rounds).map { comm.startReceive(UnsafeMutableBufferPointer(rebasing: buffer[$0...$0]), from: 1, tag: tag) }
            case 1:
                for round in 0..<rounds {
                    usleep(UInt32(pause * 1e6))
                    try [Float(round)].withUnsafeBufferPointer { try comm.send($0, to: 0, tag: tag) }
                }
                return []
            default:
                return []
            }
        }
        var seconds: [Double] = []
        var trickled = [Float](repeating: -1, count: rounds)
        var last: [Float] = [-1]
        try trickled.withUnsafeMutableBufferPointer { buffer in
            let received = try trickle(tag: 10, into: buffer)
            let began = monotonicSeconds()
            try last.withUnsafeMutableBufferPointer { last in
                if comm.rank == 0 { try comm.receive(last, from: 1, tag: 11, label: "patience: receive") }
                if comm.rank == 1 { try [Float(rounds)].withUnsafeBufferPointer { try comm.send($0, to: 0, tag: 11) } }
            }
            seconds.append(monotonicSeconds() - began)
            for request in received { try request.wait() }
        }
        if comm.rank == 0 && (trickled != (0..<rounds).map(Float.init) || last != [Float(rounds)]) {
            throw KeelError("patience: rank 0 received \(trickled) then \(last)")
        }
        trickled = [Float](repeating: -1, count: rounds)
        try trickled.withUnsafeMutableBufferPointer { buffer in
            let received = try trickle(tag: 12, into: buffer)
            let began = monotonicSeconds()
            let sum = try comm.allReduce([1.0], .sum, label: "patience: all-reduce")[0]
            seconds.append(monotonicSeconds() - began)
            for request in received { try request.wait() }
            guard sum == Double(comm.size) else { throw KeelError("patience: all-reduce gave \(sum)") }
        }
        let began = monotonicSeconds()
        if comm.rank == 1 { comm.workingAlone { usleep(UInt32(2.5 * timeout * 1e6)) } }
        let sum = try comm.allReduce([1.0], .sum, label: "patience: all-reduce after working alone")[0]
        seconds.append(monotonicSeconds() - began)
        guard sum == Double(comm.size) else { throw KeelError("patience: all-reduce gave \(sum)") }
        return seconds
    }

    /// One operation's timing at one size.
    public struct Timing: Sendable {
        public var operation: String
        public var bytes: Int
        /// Median seconds per call.
        public var seconds: Double
        /// Bytes per second as nccl-tests define it: algorithm bandwidth (bytes / time) and bus bandwidth
        /// (scaled by the share each link must carry, comparable across process counts).
        public var algorithmBandwidth: Double { Double(bytes) / seconds }
        public var busBandwidth: Double
    }

    /// Median time of all-reduce, reduce-scatter, all-gather and broadcast of `elements` floats.
    public static func measure(_ comm: any Communicator, elements: Int, iterations: Int) throws -> [Timing] {
        let n = Double(comm.size)
        let buffer = FloatBuffer(count: elements), output = FloatBuffer(count: elements / comm.size + 1)
        let counts = evenPartition(count: elements, parts: comm.size).map(\.count)
        let operations: [(String, Double, () -> CommunicationRequest)] = [
            ("all-reduce", 2 * (n - 1) / n, { comm.startAllReduce(buffer.buffer, .sum) }),
            ("reduce-scatter", (n - 1) / n, {
                comm.startReduceScatter(UnsafePointer(buffer.pointer), into: output.pointer, counts: counts, .sum)
            }),
            ("all-gather", (n - 1) / n, { comm.startAllGather(buffer.pointer, counts: counts) }),
            ("broadcast", 1, { comm.start(CommunicationOperation(.broadcast(UnsafeMutableRawPointer(buffer.pointer),
                                                                             count: elements, root: 0),
                                                                 scalar: .float32, label: "broadcast")) }),
        ]
        var timings: [Timing] = []
        for (name, factor, run) in operations {
            try run().wait()
            var seconds: [Double] = []
            for _ in 0..<iterations {
                try comm.barrier()
                let request = run()
                try request.wait()
                let interval = request.interval!
                seconds.append(interval.ended - interval.began)
            }
            // Every rank reports the slowest rank's time, as the collective is only done when all are.
            let slowest = try comm.allReduce(seconds, .max)
            let median = slowest.sorted()[slowest.count / 2]
            timings.append(Timing(operation: name, bytes: 4 * elements, seconds: median,
                                  busBandwidth: Double(4 * elements) / median * factor))
        }
        return timings
    }
}
