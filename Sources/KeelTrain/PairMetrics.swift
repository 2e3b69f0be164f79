import KeelComm

/// What a step (or an evaluation) on preference pairs measured, as TRL's trainers log it: means over the pairs. For
/// preference optimisation the rewards are β(log π − log ρ) (`rewards/chosen`, `rewards/rejected`), for a reward
/// model its scores.
public struct PairMetrics: Sendable {
    public var loss = 0.0
    public var chosenReward = 0.0
    public var rejectedReward = 0.0
    /// The share of pairs whose chosen reward is the higher (`rewards/accuracies`).
    public var accuracy = 0.0
    /// The policy's log-probabilities of the responses (`logps/chosen`, `logps/rejected`; preference optimisation only).
    public var chosenLogProbability = 0.0
    public var rejectedLogProbability = 0.0
    /// Global gradient norm before clipping (training steps only).
    public var gradientNorm = 0.0
    /// Pairs measured.
    public var pairs = 0

    /// The mean reward margin (`rewards/margins`).
    public var margin: Double { chosenReward - rejectedReward }

    /// Adds one pair's figures to these sums.
    mutating func add(loss: Double, chosen: Double, rejected: Double, logProbabilities: (Double, Double) = (0, 0)) {
        self.loss += loss
        chosenReward += chosen
        rejectedReward += rejected
        accuracy += chosen > rejected ? 1 : 0
        chosenLogProbability += logProbabilities.0
        rejectedLogProbability += logProbabilities.1
        pairs += 1
    }

    /// These sums, added over `group`'s ranks, divided by the pairs.
    func averaged(over group: any Communicator, label: String) throws -> PairMetrics {
        let local = [loss, chosenReward, rejectedReward, accuracy, chosenLogProbability, rejectedLogProbability, Double(pairs)]
        let total = group.size > 1 ? try group.allReduce(local, .sum, label: "\(label): metrics") : local
        let n = max(1, total[6])
        return PairMetrics(loss: total[0] / n, chosenReward: total[1] / n, rejectedReward: total[2] / n, accuracy: total[3] / n,
                           chosenLogProbability: total[4] / n, rejectedLogProbability: total[5] / n, gradientNorm: 0,
                           pairs: Int(total[6]))
    }
}
