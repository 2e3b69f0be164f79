import KeelCore

/// The best layout of each strategy as the cluster grows at a fixed global batch: where pipeline parallelism
/// and FSDP cross over.
public enum StrategySweep {
    /// One cluster size's answer.
    public struct Point: Sendable {
        public let devices: Int
        /// The fastest fitting layout of each strategy that has one, fastest first.
        public let best: [LayoutEstimate]
        /// Strategies with no fitting layout at this size.
        public let missing: [String]
    }

    /// Plans `workload` on `cluster` resized to each of `devices` (whole nodes; fewer devices than a node use
    /// part of one).
    public static func run(_ workload: Workload, cluster: Cluster, devices: [Int], assumptions: PlanAssumptions,
                           choices: LayoutChoices) throws -> [Point] {
        let strategies = choices.strategies.isEmpty ? LayoutChoices.strategyNames : choices.strategies
        for count in devices where count < 1 || (count > cluster.devicesPerNode && count % cluster.devicesPerNode != 0) {
            throw KeelError("plan: \(count) devices are not whole nodes of \(cluster.devicesPerNode) (or part of one)")
        }
        try workload.validate()
        return try devices.map { count in
            var sized = cluster
            sized.devicesPerNode = min(cluster.devicesPerNode, count)
            sized.nodes = max(1, count / cluster.devicesPerNode)
            // A size that no layout divides (its data-parallel ways the global batch, say) is a row saying so, not
            // the end of the sweep.
            guard !Planner.layouts(workload, cluster: sized, choices: choices).isEmpty else {
                return Point(devices: sized.devices, best: [], missing: strategies)
            }
            let plan = try Planner.plan(workload, cluster: sized, assumptions: assumptions, choices: choices)
            let best = plan.bestPerStrategy
            let present = Set(best.map(\.layout.strategy))
            return Point(devices: sized.devices, best: best, missing: strategies.filter { !present.contains($0) })
        }
    }
}
