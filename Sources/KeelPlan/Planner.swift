import Foundation
import KeelCore
import KeelParallel

/// How much of each model chunk a layout may recompute in the backward pass.
public enum RecomputeChoice: String, Sendable, CaseIterable {
    /// Keep every block's activations.
    case none
    /// Recompute the fewest blocks per chunk that make the layout fit (Megatron-LM's `--recompute-num-layers`).
    case asNeeded = "as-needed"
    /// Recompute every block.
    case full
}

/// Which layouts the planner may consider.
public struct LayoutChoices: Sendable, Equatable {
    /// Only these tensor, pipeline or data-parallel sizes (nil: any that divides).
    public var tensor: Int?
    public var pipeline: Int?
    public var data: Int?
    /// Schedules for pipelines of two or more stages.
    public var schedules: [PipelineSchedule]
    /// Largest micro-batch size (in sequences) tried; powers of two up to it.
    public var maxMicroBatchSize: Int
    /// Only this micro-batch size (nil: the powers of two).
    public var microBatchSize: Int?
    /// Virtual stages tried for interleaved schedules: 2 up to this.
    public var maxVirtualStages: Int
    public var zeroStages: [Int]
    public var sequenceParallel: [Bool]
    public var recompute: [RecomputeChoice]
    /// Only layouts of these strategies (`ParallelLayout.strategy`; empty: all).
    public var strategies: [String]

    public init(tensor: Int? = nil, pipeline: Int? = nil, data: Int? = nil,
                schedules: [PipelineSchedule] = PipelineSchedule.allCases, maxMicroBatchSize: Int = 8,
                microBatchSize: Int? = nil, maxVirtualStages: Int = 8, zeroStages: [Int] = [0, 1, 2, 3],
                sequenceParallel: [Bool] = [false, true], recompute: [RecomputeChoice] = [.none, .asNeeded],
                strategies: [String] = []) {
        self.tensor = tensor
        self.pipeline = pipeline
        self.data = data
        self.schedules = schedules
        self.maxMicroBatchSize = maxMicroBatchSize
        self.microBatchSize = microBatchSize
        self.maxVirtualStages = maxVirtualStages
        self.zeroStages = zeroStages
        self.sequenceParallel = sequenceParallel
        self.recompute = recompute
        self.strategies = strategies
    }

    /// The strategy names a layout can have.
    public static let strategyNames = ["dp", "dp+tp", "pp", "pp+tp", "fsdp", "fsdp+tp"]
}

/// A layout's memory alone: what the planner knows of layouts that do not fit.
public struct LayoutMemory: Sendable {
    public let layout: ParallelLayout
    public let memory: MemoryBreakdown
    public let memoryLimit: Double
}

/// The planner's answer: the fastest fitting layouts estimated in full, fastest first, and the ones that do
/// not fit.
public struct Plan: Sendable {
    /// Fitting layouts estimated in full, fastest first (ties: less memory first): at least the `top` fastest
    /// of all and the fastest of each strategy. The others' lower bounds (their step without pipeline bubble
    /// and messages) already exceed those, so they cannot rank among them.
    public let ranked: [LayoutEstimate]
    /// Fitting layouts considered, estimated in full or not.
    public let fitting: Int
    /// Layouts that do not fit, least memory first.
    public let tooLarge: [LayoutMemory]

    /// Layouts considered.
    public var considered: Int { fitting + tooLarge.count }

    /// Why `estimate` is slower than the best layout: how much slower, and the parts of the step that account
    /// for it — the largest differences first, both ways, until they add up to the gap within a tenth (at most
    /// four), e.g. `+65.0 ms: fsdp gathers +138.6 ms, data-parallel −73.6 ms`.
    public func whySlower(_ estimate: LayoutEstimate) -> String {
        guard let best = ranked.first else { return "" }
        let gap = estimate.time.step - best.time.step
        guard gap > 0 else { return "best" }
        let gaps = zip(estimate.time.named, best.time.named).map { (name: $0.name, seconds: $0.seconds - $1.seconds) }
            .filter { $0.seconds != 0 }.sorted { abs($0.seconds) > abs($1.seconds) }
        var parts: [String] = [], sum = 0.0
        for part in gaps.prefix(4) {
            parts.append("\(part.name) \(part.seconds > 0 ? "+" : "−")\(Plan.formatSeconds(abs(part.seconds)))")
            sum += part.seconds
            if abs(sum - gap) <= gap / 10 { break }
        }
        return "+\(Plan.formatSeconds(gap)): " + parts.joined(separator: ", ")
    }

    /// The fastest fitting layout of each strategy, in ranking order.
    public var bestPerStrategy: [LayoutEstimate] {
        var seen = Set<String>()
        return ranked.filter { seen.insert($0.layout.strategy).inserted }
    }

    /// Seconds in a short human form (µs, ms or s).
    public static func formatSeconds(_ seconds: Double) -> String {
        if seconds < 1e-6 { return String(format: "%.2f µs", seconds * 1e6) }
        if seconds < 1e-3 { return String(format: "%.0f µs", seconds * 1e6) }
        if seconds < 1 { return String(format: "%.1f ms", seconds * 1e3) }
        return String(format: "%.2f s", seconds)
    }
}

/// Searches the layouts of a workload on a cluster.
public enum Planner {
    /// Every layout of `choices` that uses all of the cluster's devices and divides the model and the batch,
    /// without recomputation (`plan` adds the recomputing variants).
    public static func layouts(_ workload: Workload, cluster: Cluster, choices: LayoutChoices) -> [ParallelLayout] {
        let model = workload.model
        let devices = cluster.devices
        var found: [ParallelLayout] = []
        let tensorSizes = divisors(of: cluster.devicesPerNode).filter {
            model.heads % $0 == 0 && model.kvHeads % $0 == 0 && (choices.tensor == nil || choices.tensor == $0)
        }
        for t in tensorSizes {
            for p in divisors(of: devices / t) where p <= model.layers && (choices.pipeline == nil || choices.pipeline == p) {
                let dp = devices / (t * p)
                guard choices.data == nil || choices.data == dp, workload.globalBatch % dp == 0 else { continue }
                let perRank = workload.globalBatch / dp
                let sizes = choices.microBatchSize.map { [$0] }
                    ?? sequence(first: 1, next: { $0 * 2 }).prefix { $0 <= choices.maxMicroBatchSize }.map { $0 }
                for b in sizes where perRank % b == 0 {
                    let m = perRank / b
                    for (schedule, v) in schedules(stages: p, layers: model.layers, microBatches: m, choices: choices) {
                        let stages = p > 1 ? [0, 1] : [0, 1, 2, 3]
                        for zero in choices.zeroStages where stages.contains(zero) && (dp > 1 || zero == 0) {
                            for sp in choices.sequenceParallel where !sp || t > 1 {
                                let layout = ParallelLayout(
                                    tensor: t, pipeline: p, data: dp, schedule: schedule, virtualStages: v,
                                    microBatchSize: b, microBatches: m, zeroStage: zero, sequenceParallel: sp)
                                if choices.strategies.isEmpty || choices.strategies.contains(layout.strategy) {
                                    found.append(layout)
                                }
                            }
                        }
                    }
                }
            }
        }
        return found
    }

    /// Estimates the layouts of `choices` and ranks those that fit; `top` is how many of the fastest must be
    /// estimated in full (the fastest of each strategy always are).
    public static func plan(_ workload: Workload, cluster: Cluster, assumptions: PlanAssumptions = PlanAssumptions(),
                            choices: LayoutChoices = LayoutChoices(), top: Int = 10) throws -> Plan {
        try workload.validate()
        try cluster.validate()
        try assumptions.validate()
        let candidates = layouts(workload, cluster: cluster, choices: choices)
        guard !candidates.isEmpty else {
            throw KeelError("plan: no layout of \(cluster.devices) devices divides this model and batch "
                + "(global batch \(workload.globalBatch), \(workload.model.layers) layers, \(workload.model.heads) heads"
                + "\(choices.tensor.map { ", tp \($0)" } ?? "")\(choices.pipeline.map { ", pp \($0)" } ?? "")"
                + "\(choices.data.map { ", dp \($0)" } ?? ""))")
        }
        // Memory first (cheap: schedules' held activations are counted once per shape), then a lower bound of
        // each fitting layout's step; the pipeline is simulated only for layouts whose bound could still place
        // them among the `top` fastest or first in their strategy.
        var peaks: [PeakKey: HeldActivations] = [:]
        var fitting: [(bound: Double, layout: ParallelLayout, peak: HeldActivations)] = []
        var tooLarge: [LayoutMemory] = []
        for base in candidates {
            let key = PeakKey(schedule: base.schedule, stages: base.pipeline, virtualStages: base.virtualStages,
                              microBatches: base.microBatches)
            let peak = try peaks[key] ?? LayoutModel(base, workload: workload, cluster: cluster, assumptions: assumptions).heldActivations()
            peaks[key] = peak
            for layout in try recomputingVariants(of: base, peak: peak, workload: workload, cluster: cluster,
                                                  assumptions: assumptions, choices: choices.recompute) {
                let model = LayoutModel(layout, workload: workload, cluster: cluster, assumptions: assumptions)
                let memory = try model.memory(held: peak)
                if memory.total <= model.memoryLimit {
                    fitting.append((try model.time(simulatingPipeline: false).step, layout, peak))
                } else {
                    tooLarge.append(LayoutMemory(layout: layout, memory: memory, memoryLimit: model.memoryLimit))
                }
            }
        }
        fitting.sort { $0.bound < $1.bound }
        var estimated: [LayoutEstimate] = []
        var fastest: [Double] = []   // the `top` smallest steps so far, ascending
        var bestOfStrategy: [String: Double] = [:]
        for candidate in fitting {
            let threshold = fastest.count < top ? Double.infinity : fastest[top - 1]
            guard candidate.bound <= max(threshold, bestOfStrategy[candidate.layout.strategy] ?? .infinity) else { continue }
            let estimate = try LayoutEstimate(candidate.layout, workload: workload, cluster: cluster,
                                              assumptions: assumptions, held: candidate.peak)
            estimated.append(estimate)
            fastest.insert(estimate.time.step, at: fastest.firstIndex { $0 > estimate.time.step } ?? fastest.count)
            if fastest.count > top { fastest.removeLast() }
            bestOfStrategy[candidate.layout.strategy] = min(bestOfStrategy[candidate.layout.strategy] ?? .infinity,
                                                            estimate.time.step)
        }
        let ranked = estimated.sorted { ($0.time.step, $0.memory.total) < ($1.time.step, $1.memory.total) }
        return Plan(ranked: ranked, fitting: fitting.count,
                    tooLarge: tooLarge.sorted { $0.memory.total < $1.memory.total })
    }

    private struct PeakKey: Hashable {
        let schedule: PipelineSchedule
        let stages: Int, virtualStages: Int, microBatches: Int
    }

    /// `base` with the recomputation `choices` allow: none, every block of each chunk, or the fewest blocks
    /// that fit (all of them when nothing fits).
    private static func recomputingVariants(of base: ParallelLayout, peak: HeldActivations, workload: Workload, cluster: Cluster,
                                            assumptions: PlanAssumptions, choices: [RecomputeChoice]) throws -> [ParallelLayout] {
        let chunk = base.chunkLayers(of: workload.model.layers)
        var counts = Set<Int>()
        if choices.contains(.none) { counts.insert(0) }
        if choices.contains(.full) { counts.insert(chunk) }
        if choices.contains(.asNeeded) {
            let fitting = try (0...chunk).first { layers in
                var layout = base
                layout.recomputedLayers = layers
                let model = LayoutModel(layout, workload: workload, cluster: cluster, assumptions: assumptions)
                return try model.memory(held: peak).total <= model.memoryLimit
            }
            counts.insert(fitting ?? chunk)
        }
        return counts.sorted().map { layers in
            var layout = base
            layout.recomputedLayers = layers
            return layout
        }
    }

    private static func schedules(stages p: Int, layers: Int, microBatches m: Int,
                                  choices: LayoutChoices) -> [(PipelineSchedule, Int)] {
        guard p > 1 else { return [(.oneForwardOneBackward, 1)] }
        return choices.schedules.flatMap { schedule -> [(PipelineSchedule, Int)] in
            guard schedule == .interleaved else { return [(schedule, 1)] }
            // Chunks of equal size on the largest stage (ceil(L/p) layers; smaller stages idle a little).
            let stageLayers = (layers + p - 1) / p
            guard m % p == 0, choices.maxVirtualStages >= 2 else { return [] }
            // Every chunk holds a block at least: p·v chunks of more than L blocks would leave some empty.
            return (2...choices.maxVirtualStages).filter { stageLayers % $0 == 0 && p * $0 <= layers }.map { (schedule, $0) }
        }
    }

    private static func divisors(of n: Int) -> [Int] {
        (1...max(1, n)).filter { n % $0 == 0 }
    }
}
