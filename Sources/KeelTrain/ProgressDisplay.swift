import Foundation
import KeelCore

/// The live progress line: redrawn in place on a terminal, printed every `every` steps otherwise.
struct ProgressDisplay {
    let totalSteps: Int
    let every: Int
    private let interactive = isatty(STDERR_FILENO) != 0

    init(totalSteps: Int, every: Int) {
        self.totalSteps = totalSteps
        self.every = every
    }

    func update(step: Int, loss: Float, learningRate: Double, tokensPerSecond: Double, secondsPerStep: Double) {
        let eta = Double(totalSteps - step) * secondsPerStep
        let line = String(format: "step %*ld/%ld | loss %.4f | lr %.2e | %@ tok/s | ETA %@",
                          Int32(String(totalSteps).count), step, totalSteps, loss, learningRate,
                          ProgressDisplay.compact(tokensPerSecond), ProgressDisplay.duration(eta))
        if interactive {
            StandardStreams.error("\r\u{1B}[K" + line)
            if step == totalSteps { StandardStreams.error("\n") }
        } else if step % every == 0 || step == totalSteps || step == 1 {
            StandardStreams.error(line + "\n")
        }
    }

    /// Prints a message on its own line without breaking the progress line.
    func message(_ text: String) {
        StandardStreams.error((interactive ? "\r\u{1B}[K" : "") + text + "\n")
    }

    static func compact(_ value: Double) -> String {
        value >= 10_000 ? String(format: "%.1fk", value / 1000) : String(format: "%.0f", value)
    }

    static func duration(_ seconds: Double) -> String {
        // Past a thousand years (steps = Int.max, "until stopped"), no figure: Int would overflow.
        guard seconds.isFinite, seconds < 3e10 else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
