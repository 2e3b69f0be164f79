import Foundation
import KeelComm
import KeelCore

/// The timelines of a run's pipeline steps on every rank, written as a Chrome trace (the JSON "Trace Event
/// Format" that Perfetto and chrome://tracing open): one process per rank, a slice per forward and backward
/// pass and per wait for a message, an instant per send; the gaps are the bubble.
public final class PipelineTrace {
    /// Per event: step, the action's four-integer code (`PipelineAction.encoded`), start and end (seconds since
    /// `origin`).
    private var events: [Double] = []
    private static let fields = 7
    private let origin: Double

    /// Times are measured from `origin` (monotonic seconds), taken by every rank right after a common barrier
    /// so that the ranks' timelines line up.
    public init(origin: Double = monotonicSeconds()) {
        self.origin = origin
    }

    /// Appends the executor's timeline of step `step`.
    public func record(step: Int, _ executor: PipelineExecutor) {
        for event in executor.timeline {
            events += [Double(step)] + event.action.encoded.map(Double.init) + [event.start - origin, event.end - origin]
        }
    }

    /// Gathers every rank's events to world rank 0, which writes the trace to `url` (atomically). Ranks are
    /// labelled with their place in `mesh`.
    public func write(to url: URL, world: any Communicator, mesh: Mesh) throws {
        let counts = try gatherCounts(world)
        var gathered = [Double](repeating: 0, count: world.rank == 0 ? counts.reduce(0, +) : 0)
        // A rank without events still passes a valid (unread) address.
        let local = events.isEmpty ? [0] : events
        try local.withUnsafeBufferPointer { source in
            try gathered.withUnsafeMutableBufferPointer { destination in
                try world.gather(source.baseAddress!, into: destination.baseAddress, counts: counts, root: 0,
                                 label: "trace: timelines")
            }
        }
        guard world.rank == 0 else { return }
        var lines: [String] = []
        var offset = 0
        for (rank, count) in counts.enumerated() {
            let place = mesh.coordinates(of: rank)
            lines.append(#"{"name": "process_name", "ph": "M", "pid": \#(rank), "args": {"name": "rank \#(rank): stage \#(place.pipeline), replica \#(place.data)"}}"#)
            for index in stride(from: offset, to: offset + count, by: Self.fields) {
                let e = Array(gathered[index..<(index + Self.fields)])
                guard let action = PipelineAction(encoded: e[1..<5].map { Int64($0) }[...]) else { continue }
                let (name, category) = Self.describe(action)
                let start = String(format: "%.3f", e[5] * 1e6), duration = String(format: "%.3f", (e[6] - e[5]) * 1e6)
                let args = #""args": {"step": \#(Int(e[0])), "micro_batch": \#(Int(e[2])), "chunk": \#(Int(e[3]))}"#
                if category == "send" {
                    lines.append(#"{"name": "\#(name)", "cat": "send", "ph": "i", "s": "t", "ts": \#(start), "pid": \#(rank), "tid": 0, \#(args)}"#)
                } else {
                    lines.append(#"{"name": "\#(name)", "cat": "\#(category)", "ph": "X", "ts": \#(start), "dur": \#(duration), "pid": \#(rank), "tid": 0, \#(args)}"#)
                }
            }
            offset += count
        }
        let text = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n" + lines.joined(separator: ",\n") + "\n]}\n"
        try AtomicFile.write(Data(text.utf8), to: url)
    }

    /// Every rank's number of event fields, known to all ranks (a gather's counts must agree everywhere).
    private func gatherCounts(_ world: any Communicator) throws -> [Int] {
        try world.allGather([Int64(events.count)], label: "trace: event counts").map { Int($0) }
    }

    private static func describe(_ action: PipelineAction) -> (name: String, category: String) {
        switch action {
        case let .forward(k, _): ("F\(k)", "forward")
        case let .backward(k, _): ("B\(k)", "backward")
        case let .backwardInput(k, _): ("B\(k) (input)", "backward")
        case let .backwardWeight(k, _): ("W\(k)", "backward weights")
        case let .receiveActivation(k, _, from): ("wait: activations \(k) from rank \(from)", "wait")
        case let .receiveGradient(k, _, from): ("wait: gradient \(k) from rank \(from)", "wait")
        case let .sendActivation(k, _, to): ("send activations \(k) to rank \(to)", "send")
        case let .sendGradient(k, _, to): ("send gradient \(k) to rank \(to)", "send")
        case .optimizerStep: ("step", "step")
        }
    }
}
