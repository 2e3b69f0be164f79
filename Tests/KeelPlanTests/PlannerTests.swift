@testable import KeelPlan
import KeelModel
import XCTest

final class PlannerTests: XCTestCase {
    private func cluster(_ gpus: Int, _ accelerator: String = "h100-sxm") throws -> Cluster {
        Cluster(accelerator: try Accelerator.preset(accelerator), devicesPerNode: min(8, gpus), nodes: max(1, gpus / 8),
                intraNode: try Link.preset("nvlink4"), interNode: try Link.preset("ib-ndr"))
    }

    /// Ring collectives by hand: 4 devices, 1 GB, 100 GB/s, 10 µs per step.
    func testRingCollectiveTimes() {
        let link = Link(name: "x", bandwidth: 100e9, latency: 10e-6)
        XCTAssertEqual(CollectiveCost.reduceScatter(bytes: 1e9, devices: 4, link: link), 0.75 * 0.01 + 3e-5, accuracy: 1e-12)
        XCTAssertEqual(CollectiveCost.allReduce(bytes: 1e9, devices: 4, link: link), 1.5 * 0.01 + 6e-5, accuracy: 1e-12)
        XCTAssertEqual(CollectiveCost.allReduce(bytes: 1e9, devices: 1, link: link), 0)
        // The same buffer in 10 pieces (FSDP's layers, ZeRO's buckets), each a ring of its own: the bytes once, the
        // ring's 3 latencies 10 times.
        XCTAssertEqual(CollectiveCost.allGather(bytes: 1e9, devices: 4, link: link, pieces: 10), 0.75 * 0.01 + 3e-4, accuracy: 1e-12)
        XCTAssertEqual(CollectiveCost.allReduce(bytes: 1e9, devices: 4, link: link, pieces: 10), 1.5 * 0.01 + 6e-4, accuracy: 1e-12)
    }

    /// FSDP over 2,048 devices pays each layer's ring latencies (2,047 steps of 8 µs on RoCE, 16 ms a layer per
    /// collective): Llama 3 70B's best FSDP layout at 16,384 H100s then spends longer communicating than computing.
    func testFullyShardedLayersEachPayTheRingsLatencies() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-70b"), sequenceLength: 8192, globalBatch: 2048)
        var roce = try cluster(16_384)
        roce.interNode = try Link.preset("roce-400")
        let layout = ParallelLayout(tensor: 8, pipeline: 1, data: 2048, microBatchSize: 1, microBatches: 1, zeroStage: 3,
                                    sequenceParallel: true)
        let estimate = try LayoutEstimate(layout, workload: workload, cluster: roce, assumptions: PlanAssumptions())
        // 81 pieces (80 blocks and the embedding and head) × 3 collectives × 2,047 × 8 µs = 4.0 s of latencies alone.
        XCTAssertGreaterThan(estimate.time.fsdp, 81 * 3 * 2047 * 8e-6 - estimate.time.compute)
        XCTAssertGreaterThan(estimate.time.fsdp, estimate.time.compute)
    }

    /// Skipping layouts whose lower bound cannot rank changes nothing: the same top layouts, in the same order,
    /// with the same times, as estimating every layout in full.
    func testPruningKeepsTheExhaustiveRanking() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-8b"), sequenceLength: 4096, globalBatch: 256)
        let cluster = try cluster(64)
        let pruned = try Planner.plan(workload, cluster: cluster, top: 10)
        let exhaustive = try Planner.plan(workload, cluster: cluster, top: .max)
        XCTAssertEqual(pruned.fitting, exhaustive.fitting)
        XCTAssertEqual(exhaustive.ranked.count, exhaustive.fitting, "top .max estimates every fitting layout")
        XCTAssertLessThan(pruned.ranked.count, exhaustive.ranked.count, "the bound must skip some layouts")
        XCTAssertEqual(pruned.ranked.prefix(10).map(\.layout), exhaustive.ranked.prefix(10).map(\.layout))
        XCTAssertEqual(pruned.bestPerStrategy.map(\.layout), exhaustive.bestPerStrategy.map(\.layout))
        XCTAssertTrue(pruned.ranked.allSatisfy(\.fits))
        XCTAssertEqual(pruned.whySlower(pruned.ranked[0]), "best")
        let second = pruned.ranked[1], gap = second.time.step - pruned.ranked[0].time.step
        XCTAssertTrue(pruned.whySlower(second).hasPrefix("+\(Plan.formatSeconds(gap)): "), pruned.whySlower(second))
        XCTAssertEqual(pruned.ranked.map(\.time.step), pruned.ranked.map(\.time.step).sorted())
    }

    /// ZeRO-1 shards the optimizer state, ZeRO-2 the gradients too, ZeRO-3 the parameters too, each by dp.
    func testZeroStagesShardTheirState() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-8b"), sequenceLength: 4096, globalBatch: 64)
        let cluster = try cluster(8)
        let memory = try (0...3).map { zero in
            try LayoutEstimate(ParallelLayout(tensor: 1, pipeline: 1, data: 8, microBatchSize: 1, microBatches: 8, zeroStage: zero),
                               workload: workload, cluster: cluster, assumptions: PlanAssumptions()).memory
        }
        let parameters = ModelCost(workload.model).parameters
        XCTAssertEqual(memory[0].parameters, 2 * parameters)
        XCTAssertEqual(memory[0].gradients, 4 * parameters)
        XCTAssertEqual(memory[0].optimizerState, 12 * parameters)
        XCTAssertEqual(memory[1].optimizerState, 12 * parameters / 8)
        XCTAssertEqual(memory[1].gradients, 4 * parameters)
        XCTAssertEqual(memory[2].gradients, 4 * parameters / 8)
        XCTAssertEqual(memory[2].parameters, 2 * parameters)
        XCTAssertEqual(memory[3].parameters, 2 * parameters / 8)
        XCTAssertEqual(Set(memory.map(\.activations)).count, 1, "sharding state leaves activations alone")
    }

    /// Recomputing "as needed" picks the fewest blocks that fit: one fewer would not fit.
    func testAsNeededRecomputationIsTheLeastThatFits() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-70b"), sequenceLength: 8192, globalBatch: 512)
        let cluster = try cluster(256)
        let plan = try Planner.plan(workload, cluster: cluster, choices: LayoutChoices(recompute: [.asNeeded]), top: 40)
        let recomputing = plan.ranked.filter { $0.layout.recomputedLayers > 0 }
        XCTAssertFalse(recomputing.isEmpty)
        for estimate in recomputing {
            var fewer = estimate.layout
            fewer.recomputedLayers -= 1
            let other = try LayoutEstimate(fewer, workload: workload, cluster: cluster, assumptions: PlanAssumptions())
            XCTAssertFalse(other.fits, "\(estimate.layout.name) recomputes more than it needs")
            XCTAssertGreaterThan(estimate.time.step, other.time.step, "recomputation costs time")
        }
    }

    /// With a pipeline, the busiest device is the first rank (activations in flight) or the last (the head and
    /// its logits), not a mix: 1F1B's last rank holds one micro-batch, its first p of them.
    func testPipelineMemoryIsOneRanksMemory() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-8b"), sequenceLength: 8192, globalBatch: 64)
        let layout = ParallelLayout(tensor: 1, pipeline: 4, data: 2, microBatchSize: 1, microBatches: 32, zeroStage: 1)
        let estimate = try LayoutEstimate(layout, workload: workload, cluster: try cluster(8), assumptions: PlanAssumptions())
        let cost = ModelCost(workload.model)
        let block = 8192 * cost.activationBytesPerLayer(sequence: 8192, tensor: 1, sequenceParallel: false, attention: .flash)
        XCTAssertEqual(estimate.memory.activations, 4 * 8 * block, accuracy: 1, "the first rank: 4 micro-batches × 8 blocks")
        XCTAssertEqual(estimate.memory.parameters, 2 * (8 * cost.parametersPerLayer + cost.embeddingParameters), accuracy: 1)
    }

    /// ZB-H1 holds a micro-batch's activations until its W: every rank holds p of them, and the last rank waits with
    /// p W passes (the p − 1 it holds back and the one whose B just ran), each with its blocks' output gradients;
    /// so its last rank, with the head, is the busiest, not 1F1B's first.
    func testZeroBubbleHoldsActivationsUntilTheWeightPass() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-8b"), sequenceLength: 8192, globalBatch: 64)
        let layout = ParallelLayout(tensor: 1, pipeline: 4, data: 2, schedule: .zeroBubbleH1, microBatchSize: 1, microBatches: 32,
                                    zeroStage: 1)
        let estimate = try LayoutEstimate(layout, workload: workload, cluster: try cluster(8), assumptions: PlanAssumptions())
        let cost = ModelCost(workload.model)
        let block = 8192 * cost.activationBytesPerLayer(sequence: 8192, tensor: 1, sequenceParallel: false, attention: .flash)
        // Q, K, V (4096 + 2 × 1024), the output projection (4096), gate and up (2 × 14336), down (4096): 16-bit.
        let outputGradients = 8192 * 2 * Double(4096 + 2 * 1024 + 4096 + 2 * 14336 + 4096)
        XCTAssertEqual(estimate.memory.activations, 4 * 8 * block + 4 * 8 * outputGradients + 8192 * cost.headActivationBytes(tensor: 1),
                       accuracy: 1, "the last rank: 4 micro-batches × 8 blocks, 4 waiting for W, and the head")
    }

    func testLayoutsThisModelCannotEstimateAreRefused() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-8b"), sequenceLength: 4096, globalBatch: 64)
        let bad = [ParallelLayout(tensor: 1, pipeline: 4, data: 2, schedule: .interleaved, virtualStages: 3, microBatchSize: 1,
                                  microBatches: 32, zeroStage: 1),
                   ParallelLayout(tensor: 1, pipeline: 1, data: 8, microBatchSize: 1, microBatches: 8, zeroStage: 0, recomputedLayers: 33),
                   ParallelLayout(tensor: 1, pipeline: 1, data: 8, microBatchSize: 1, microBatches: 8, zeroStage: 4),
                   // Another batch than the workload's (64 sequences), and fewer devices than the cluster's 8.
                   ParallelLayout(tensor: 1, pipeline: 1, data: 8, microBatchSize: 2, microBatches: 8, zeroStage: 0),
                   ParallelLayout(tensor: 1, pipeline: 1, data: 4, microBatchSize: 2, microBatches: 8, zeroStage: 0)]
        for layout in bad {
            XCTAssertThrowsError(try LayoutEstimate(layout, workload: workload, cluster: try cluster(8), assumptions: PlanAssumptions()),
                                 layout.name)
        }
    }

    /// Interleaving never cuts a model into more chunks than it has blocks: GPT-2 124M's 12 blocks on 8 stages are
    /// 2 on the largest stage, which v = 2 divides, but 16 chunks would leave 4 empty (the planner once ranked them).
    func testInterleavingLeavesNoChunkEmpty() throws {
        let workload = Workload(model: try ModelPresets.named("gpt2-124m"), sequenceLength: 1024, globalBatch: 64)
        let layouts = Planner.layouts(workload, cluster: try cluster(8), choices: LayoutChoices())
        XCTAssertTrue(layouts.contains { $0.schedule == .interleaved }, "some interleaved layouts remain (pp 2, 4)")
        XCTAssertTrue(layouts.allSatisfy { $0.pipeline * $0.virtualStages <= 12 }, "\(layouts.filter { $0.pipeline * $0.virtualStages > 12 }.map(\.name))")
        XCTAssertThrowsError(try LayoutEstimate(ParallelLayout(tensor: 1, pipeline: 8, data: 1, schedule: .interleaved, virtualStages: 2,
                                                               microBatchSize: 1, microBatches: 64, zeroStage: 0),
                                                workload: workload, cluster: try cluster(8), assumptions: PlanAssumptions()))
    }

    func testNothingFitsListsTheSmallestFirst() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-405b"), sequenceLength: 8192, globalBatch: 16)
        let plan = try Planner.plan(workload, cluster: try cluster(8))
        XCTAssertTrue(plan.ranked.isEmpty)
        XCTAssertEqual(plan.fitting, 0)
        XCTAssertFalse(plan.tooLarge.isEmpty)
        XCTAssertEqual(plan.tooLarge.map(\.memory.total), plan.tooLarge.map(\.memory.total).sorted())
        XCTAssertGreaterThan(plan.tooLarge[0].memory.total, plan.tooLarge[0].memoryLimit)
    }

    func testBadInputIsNamed() throws {
        var model = try ModelPresets.named("llama3-8b")
        model.kvHeads = 5
        XCTAssertThrowsError(try Planner.plan(Workload(model: model, sequenceLength: 4096, globalBatch: 8), cluster: try cluster(8))) {
            XCTAssertTrue("\($0)".contains("key/value heads"), "\($0)")
        }
        let workload = Workload(model: try ModelPresets.named("llama3-8b"), sequenceLength: 4096, globalBatch: 7)
        XCTAssertThrowsError(try Planner.plan(workload, cluster: try cluster(8), choices: LayoutChoices(tensor: 1, pipeline: 1))) {
            XCTAssertTrue("\($0)".contains("no layout of 8 devices"), "\($0)")
        }
        var broken = try cluster(8)
        broken.interNode.bandwidth = 0
        XCTAssertThrowsError(try Planner.plan(workload, cluster: broken)) { XCTAssertTrue("\($0)".contains("bandwidth"), "\($0)") }
        XCTAssertThrowsError(try Planner.plan(workload, cluster: try cluster(8), assumptions: PlanAssumptions(efficiency: 1.5)))
        XCTAssertThrowsError(try Accelerator.preset("tpu")) { XCTAssertTrue("\($0)".contains("a100-80gb"), "\($0)") }
    }

    /// The crossover docs/planner.md reports: Llama 3 405B at 16M tokens per step on H100s with RoCE, FSDP with
    /// tensor parallelism is ahead at 2,048 devices and pipeline parallelism (with tensor parallelism) at
    /// 16,384, where FSDP's per-micro-batch gathers no longer hide behind one sequence's compute.
    func testDocumentedCrossover() throws {
        let workload = Workload(model: try ModelPresets.named("llama3-405b"), sequenceLength: 8192, globalBatch: 2048)
        var roce = try cluster(8)
        roce.interNode = try Link.preset("roce-400")
        let points = try StrategySweep.run(workload, cluster: roce, devices: [2048, 16_384], assumptions: PlanAssumptions(),
                                           choices: LayoutChoices(strategies: ["pp+tp", "fsdp+tp"]))
        func mfu(_ point: StrategySweep.Point, _ strategy: String) -> Double {
            point.best.first { $0.layout.strategy == strategy }!.mfu
        }
        XCTAssertGreaterThan(mfu(points[0], "fsdp+tp"), mfu(points[0], "pp+tp"))
        XCTAssertGreaterThan(mfu(points[1], "pp+tp"), mfu(points[1], "fsdp+tp"))
        let fsdp = points[1].best.first { $0.layout.strategy == "fsdp+tp" }!
        let pipeline = points[1].best.first { $0.layout.strategy == "pp+tp" }!
        XCTAssertGreaterThan(fsdp.traffic.interNode, 2 * pipeline.traffic.interNode)
    }
}
