import Foundation

/// Accumulates wall time, FLOPs and bytes moved per kind of work and direction, for `keel bench --profile`.
///
/// Timing one kernel call at a time is only meaningful because every kernel returns when its work is done
/// (the thread pool joins before returning), so the sum of the parts plus "other" is the step.
public final class Profiler {
    /// What a span of work is.
    public enum Kind: String, CaseIterable, Sendable {
        case embedding, norm, matmul, attention, activation, residual, loss, optimizer, data
        /// The tensor group's collectives inside the passes (tensor and sequence parallelism).
        case tensorCommunication = "tensor comm"
    }

    public enum Direction: String, CaseIterable, Sendable {
        case forward, backward
    }

    private struct Totals {
        var seconds = 0.0, flops = 0.0, bytes = 0.0
    }

    private var totals: [String: Totals] = [:]
    private var stepSeconds = 0.0
    private var steps = 0
    private var stepStart = Date()

    public init() {}

    /// Runs `body`, adding its time, `flops` and `bytes` to (kind, direction).
    @inline(__always)
    public func measure<T>(_ kind: Kind, _ direction: Direction, flops: Double, bytes: Double, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let key = kind == .optimizer || kind == .data ? kind.rawValue : "\(kind.rawValue) \(direction.rawValue)"
        totals[key, default: Totals()].seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        totals[key, default: Totals()].flops += flops
        totals[key, default: Totals()].bytes += bytes
        return result
    }

    public func reset() {
        totals = [:]
        stepSeconds = 0
        steps = 0
    }

    public func stepStarted() { stepStart = Date() }

    public func stepEnded() {
        stepSeconds += Date().timeIntervalSince(stepStart)
        steps += 1
    }

    /// Per step, for each kind of work measured ("matmul forward", "optimizer", …): milliseconds, FLOPs and
    /// bytes moved.
    public func perStep() -> [String: (milliseconds: Double, flops: Double, bytes: Double)] {
        guard steps > 0 else { return [:] }
        let n = Double(steps)
        return totals.mapValues { (1000 * $0.seconds / n, $0.flops / n, $0.bytes / n) }
    }

    /// A table: each kind's milliseconds per step, share of the step, and achieved GFLOP/s or GB/s.
    public func report() -> String {
        guard steps > 0 else { return "no steps profiled" }
        func row(_ name: String, _ seconds: Double, _ rate: String) -> String {
            name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + String(format: "%10.2f ms %6.1f%%  ", seconds * 1000 / Double(steps), 100 * seconds / stepSeconds) + rate
        }
        var lines = ["work".padding(toLength: 22, withPad: " ", startingAt: 0) + "   per step   share  rate"]
        for (key, value) in totals.sorted(by: { $0.value.seconds > $1.value.seconds }) {
            let rate = value.flops > 0 ? String(format: "%.1f GFLOP/s", value.flops / value.seconds / 1e9)
                : value.bytes > 0 ? String(format: "%.1f GB/s", value.bytes / value.seconds / 1e9) : ""
            lines.append(row(key, value.seconds, rate))
        }
        lines.append(row("other (idle, glue)", stepSeconds - totals.values.reduce(0) { $0 + $1.seconds }, ""))
        lines.append(row("step", stepSeconds, ""))
        return lines.joined(separator: "\n")
    }
}
