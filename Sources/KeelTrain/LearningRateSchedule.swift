import Foundation

/// Linear warm-up to the peak rate, then cosine decay to the minimum at the last step.
public struct LearningRateSchedule: Sendable {
    public let peak: Double
    public let minimum: Double
    public let warmupSteps: Int
    public let totalSteps: Int

    public init(peak: Double, minimum: Double, warmupSteps: Int, totalSteps: Int) {
        self.peak = peak
        self.minimum = minimum
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The rate for optimizer step `step` (counted from 1).
    public func rate(at step: Int) -> Double {
        if step <= warmupSteps { return peak * Double(step) / Double(warmupSteps) }
        let decaySteps = totalSteps - warmupSteps
        guard decaySteps > 0 else { return peak }
        let progress = min(1, Double(step - warmupSteps) / Double(decaySteps))
        return minimum + 0.5 * (1 + cos(Double.pi * progress)) * (peak - minimum)
    }
}
