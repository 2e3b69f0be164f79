import Foundation

/// The per-token loss of group-relative policy optimisation (GRPO) and its derivative, as TRL's `GRPOTrainer`
/// computes them, in Double.
public enum PolicyLoss {
    /// One completion token's loss: −min(ρA, clip(ρ, 1 − ε, 1 + ε)A) + β·k3, ρ = e^(π − π_old) the ratio of the policy's
    /// probability of the token to the sampling policy's, and k3 = e^(ρ_ref − π) − (ρ_ref − π) − 1 the KL estimate to
    /// the reference (Schulman's k3; β 0 or no reference: none). Arguments are log-probabilities. Returns the loss, its
    /// derivative with respect to `logProbability` (the surrogate's is −ρA where the unclipped term is the smaller, 0
    /// where the clipped one is), and whether the clipped term was the smaller.
    public static func clippedSurrogate(logProbability: Double, old: Double, reference: Double?, advantage: Double,
                                        epsilon: Double, beta: Double) -> (loss: Double, derivative: Double, clipped: Bool) {
        let ratio = exp(logProbability - old)
        let unclipped = ratio * advantage, clipped = min(max(ratio, 1 - epsilon), 1 + epsilon) * advantage
        var loss = -min(unclipped, clipped), derivative = unclipped <= clipped ? -ratio * advantage : 0
        if beta > 0, let reference {
            let d = reference - logProbability
            loss += beta * (exp(d) - d - 1)
            derivative += beta * (1 - exp(d))
        }
        return (loss, derivative, clipped < unclipped)
    }

    /// The KL estimate k3 of one token: e^(ρ_ref − π) − (ρ_ref − π) − 1.
    public static func kl(logProbability: Double, reference: Double) -> Double {
        let d = reference - logProbability
        return exp(d) - d - 1
    }

    /// Group-normalised advantages: the rewards, in consecutive groups of `groupSize` (one prompt's completions), less
    /// their group's mean, over its standard deviation (Bessel's correction, as `torch.std`) plus 10⁻⁴; and each
    /// group's standard deviation.
    public static func groupAdvantages(_ rewards: [Double], groupSize: Int) -> (advantages: [Double], spreads: [Double]) {
        precondition(groupSize >= 2 && rewards.count % groupSize == 0)
        var advantages: [Double] = [], spreads: [Double] = []
        for start in stride(from: 0, to: rewards.count, by: groupSize) {
            let group = rewards[start..<(start + groupSize)], mean = group.reduce(0, +) / Double(groupSize)
            let std = (group.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) } / Double(groupSize - 1)).squareRoot()
            spreads.append(std)
            advantages += group.map { ($0 - mean) / (std + 1e-4) }
        }
        return (advantages, spreads)
    }
}
