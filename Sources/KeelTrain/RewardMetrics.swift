import Foundation

/// What makes a reward model trustworthy, measured on held-out preference pairs: how often it prefers the chosen
/// response, whether its confidence means what it says, whether another model (another seed, another data order)
/// agrees with it, and whether it rewards length rather than quality.
public enum RewardMetrics {
    /// The share of pairs whose chosen response gets the higher reward (a tie counts as wrong, as TRL counts it).
    public static func pairwiseAccuracy(chosen: [Double], rejected: [Double]) -> Double {
        precondition(chosen.count == rejected.count && !chosen.isEmpty)
        return Double(zip(chosen, rejected).filter { $0 > $1 }.count) / Double(chosen.count)
    }

    /// Expected calibration error of the Bradley–Terry probability σ(r_c − r_r) that the chosen response is
    /// preferred: each pair's confidence max(p, 1 − p), right when p > 1/2; `bins` equal bins of confidence over
    /// [1/2, 1] (the last one closed); Σ over bins of |accuracy − mean confidence| weighted by the bin's share.
    public static func expectedCalibrationError(chosen: [Double], rejected: [Double], bins: Int = 10) -> Double {
        precondition(chosen.count == rejected.count && !chosen.isEmpty && bins > 0)
        var count = [Int](repeating: 0, count: bins), right = count, confidence = [Double](repeating: 0, count: bins)
        for (c, r) in zip(chosen, rejected) {
            let p = 1 / (1 + exp(-(c - r))), sure = max(p, 1 - p)
            let bin = min(bins - 1, Int((sure - 0.5) * 2 * Double(bins)))
            count[bin] += 1
            right[bin] += p > 0.5 ? 1 : 0
            confidence[bin] += sure
        }
        let total = Double(chosen.count)
        return (0..<bins).filter { count[$0] > 0 }.reduce(0.0) { error, bin in
            let n = Double(count[bin])
            return error + abs(Double(right[bin]) / n - confidence[bin] / n) * n / total
        }
    }

    /// The share of pairs two reward models order the same way (both prefer the chosen, or both the rejected;
    /// a tie in either counts as disagreement).
    public static func pairwiseAgreement(first: (chosen: [Double], rejected: [Double]),
                                         second: (chosen: [Double], rejected: [Double])) -> Double {
        let n = first.chosen.count
        precondition(n > 0 && [first.rejected.count, second.chosen.count, second.rejected.count].allSatisfy { $0 == n })
        let same = (0..<n).filter { i in
            let a = first.chosen[i] - first.rejected[i], b = second.chosen[i] - second.rejected[i]
            return a * b > 0
        }.count
        return Double(same) / Double(n)
    }

    /// Pearson's correlation of x and y (0 when either is constant).
    public static func pearson(_ x: [Double], _ y: [Double]) -> Double {
        precondition(x.count == y.count && x.count > 1)
        let n = Double(x.count), mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) {
            sxy += (a - mx) * (b - my)
            sxx += (a - mx) * (a - mx)
            syy += (b - my) * (b - my)
        }
        return sxx > 0 && syy > 0 ? sxy / (sxx * syy).squareRoot() : 0
    }

    /// Spearman's rank correlation: Pearson's over the ranks, ties given their average rank.
    public static func spearman(_ x: [Double], _ y: [Double]) -> Double { pearson(ranks(x), ranks(y)) }

    /// 1-based ranks, ties sharing the average of the ranks they span.
    public static func ranks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
            let average = Double(start + end) / 2 + 1
            for k in start...end { ranks[order[k]] = average }
            start = end + 1
        }
        return ranks
    }

    /// Length sensitivity: the correlation of every response's reward with its length, and the pairwise accuracy
    /// on the pairs whose chosen response is the shorter (nil when there is none) — a model that rewards length
    /// scores well overall and badly there.
    public static func lengthSensitivity(chosen: [Double], rejected: [Double], chosenLengths: [Int], rejectedLengths: [Int])
        -> (correlation: Double, accuracyWhenChosenIsShorter: Double?) {
        let rewards = chosen + rejected, lengths = (chosenLengths + rejectedLengths).map(Double.init)
        let shorter = chosen.indices.filter { chosenLengths[$0] < rejectedLengths[$0] }
        let accuracy = shorter.isEmpty ? nil
            : pairwiseAccuracy(chosen: shorter.map { chosen[$0] }, rejected: shorter.map { rejected[$0] })
        return (pearson(rewards, lengths), accuracy)
    }
}
