import Foundation

/// The losses of learning from preferences, per pair of a chosen and a rejected response, with their gradients —
/// as TRL computes them (its `RewardTrainer` and `DPOTrainer`), in Double.
public enum PreferenceLoss {
    /// log σ(x), without overflow for any finite x: min(x, 0) − log(1 + e^(−|x|)).
    public static func logSigmoid(_ x: Double) -> Double { min(x, 0) - log1p(exp(-abs(x))) }

    /// σ(x) without overflow.
    public static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

    /// A reward model's Bradley–Terry loss on one pair of scalar rewards: −log σ(r_c − r_r − margin), plus
    /// `centering` · (r_c + r_r)² (TRL's `center_rewards_coefficient`, which keeps rewards near zero). Returns the
    /// loss and its derivatives with respect to the two rewards.
    public static func bradleyTerry(chosen: Double, rejected: Double, margin: Double = 0, centering: Double = 0)
        -> (loss: Double, dChosen: Double, dRejected: Double) {
        let x = chosen - rejected - margin
        // d/dx −log σ(x) = −(1 − σ(x)) = −σ(−x)
        let dx = -sigmoid(-x), sum = chosen + rejected
        return (-logSigmoid(x) + centering * sum * sum, dx + 2 * centering * sum, -dx + 2 * centering * sum)
    }

    /// Which objective preference optimisation takes.
    public enum Objective: String, Sendable, CaseIterable {
        /// DPO (Rafailov et al.): −log σ(β · h), h the difference of the chosen's and the rejected's log-ratios to the
        /// reference, with label smoothing ε (cDPO): −(1 − ε) log σ(βh) − ε log σ(−βh).
        case sigmoid
        /// IPO (Azar et al.): (h − 1/(2β))², h over length-averaged log-probabilities (the caller averages them).
        case ipo
    }

    /// One pair's preference-optimisation loss from the policy's and the reference's log-probabilities of the
    /// chosen and rejected responses (sums over their tokens, or averages for IPO), as TRL's `dpo_loss`. Returns the
    /// loss, its derivatives with respect to the policy's two log-probabilities, and the implicit rewards
    /// β(π − ρ) of each response (TRL's `rewards/chosen` and `rewards/rejected`).
    public static func preference(_ objective: Objective, policyChosen: Double, policyRejected: Double,
                                  referenceChosen: Double, referenceRejected: Double, beta: Double,
                                  labelSmoothing: Double = 0)
        -> (loss: Double, dChosen: Double, dRejected: Double, chosenReward: Double, rejectedReward: Double) {
        let h = (policyChosen - referenceChosen) - (policyRejected - referenceRejected)
        let loss: Double, dh: Double
        switch objective {
        case .sigmoid:
            let z = beta * h
            loss = -(1 - labelSmoothing) * logSigmoid(z) - labelSmoothing * logSigmoid(-z)
            // d/dz: −(1 − ε) σ(−z) + ε σ(z)
            dh = beta * (-(1 - labelSmoothing) * sigmoid(-z) + labelSmoothing * sigmoid(z))
        case .ipo:
            let d = h - 1 / (2 * beta)
            loss = d * d
            dh = 2 * d
        }
        return (loss, dh, -dh, beta * (policyChosen - referenceChosen), beta * (policyRejected - referenceRejected))
    }
}
