import Foundation
import KeelPlan

/// `keel plan`'s tables and JSON.
enum PlanOutput {
    /// The workload and cluster in two lines.
    static func header(_ input: PlanInput, devices: String? = nil) -> String {
        let workload = input.workload, cluster = input.cluster
        let parameters = ModelCost(workload.model).parameters
        let link = cluster.nodes > 1 || devices != nil ? "\(cluster.intraNode.name) inside nodes, \(cluster.interNode.name) between"
            : "\(cluster.intraNode.name)"
        return String(format: "%@ (%.2fB parameters), sequence %d, %d sequences per step (%@ tokens)\n",
                      input.modelName, parameters / 1e9, workload.sequenceLength, workload.globalBatch,
                      count(workload.tokensPerStep))
            + String(format: "%@ %@ (%d per node; %@), matrix products at %.1f%% of peak, %@ attention",
                     devices ?? "\(cluster.devices) ×", cluster.accelerator.name, cluster.devicesPerNode, link,
                     input.assumptions.efficiency * 100, input.assumptions.attention.rawValue)
    }

    static func text(_ plan: Plan, input: PlanInput, top: Int) -> String {
        var out = header(input) + "\n"
        let limit = plan.ranked.first?.memoryLimit ?? plan.tooLarge.first?.memoryLimit ?? 0
        out += String(format: "%d layouts considered: %d fit in %.1f GB of memory per device, %d do not.\n\n",
                      plan.considered, plan.fitting, limit / 1e9, plan.tooLarge.count)
        guard !plan.ranked.isEmpty else {
            out += "No layout fits. Those needing the least memory:\n"
            var rows = [["layout", "memory", "parameters", "gradients", "optimizer", "activations", "buffers"]]
            for entry in plan.tooLarge.prefix(top) {
                let memory = entry.memory
                rows.append([entry.layout.name] + [memory.total, memory.parameters, memory.gradients, memory.optimizerState,
                                                   memory.activations, memory.buffers].map { String(format: "%.1f GB", $0 / 1e9) })
            }
            return out + align(rows)
        }
        out += table(Array(plan.ranked.prefix(top)), plan: plan)
        out += "\nThe best layout of each strategy:\n"
        var rows = [["strategy", "layout", "memory", "step", "MFU", "why slower"]]
        for best in plan.bestPerStrategy {
            rows.append([best.layout.strategy, best.layout.name, String(format: "%.1f GB", best.memory.total / 1e9),
                         Plan.formatSeconds(best.time.step), percent(best.mfu), plan.whySlower(best)])
        }
        out += align(rows)
        let found = Set(plan.bestPerStrategy.map(\.layout.strategy))
        let missing = (input.choices.strategies.isEmpty ? LayoutChoices.strategyNames : input.choices.strategies)
            .filter { !found.contains($0) }
        if !missing.isEmpty { out += "no layout fits or divides for: \(missing.joined(separator: ", "))\n" }
        return out
    }

    /// One row per estimate: memory, step and its parts, throughput, and why it is slower than the best.
    static func table(_ estimates: [LayoutEstimate], plan: Plan) -> String {
        var rows = [["#", "layout", "memory", "step", "tokens/s", "MFU", "compute", "tp comm", "bubble", "pp send",
                     "dp comm", "fsdp", "optimizer", "why slower"]]
        for (index, estimate) in estimates.enumerated() {
            let time = estimate.time
            rows.append([String(index + 1), estimate.layout.name, String(format: "%.1f GB", estimate.memory.total / 1e9),
                         Plan.formatSeconds(time.step), count(estimate.tokensPerSecond), percent(estimate.mfu)]
                + [time.compute, time.tensorParallel, time.pipelineBubble, time.pipelineTransfer, time.dataParallel,
                   time.fsdp, time.optimizer].map { $0 > 0 ? Plan.formatSeconds($0) : "-" }
                + [plan.whySlower(estimate)])
        }
        return align(rows)
    }

    static func json(_ plan: Plan, input: PlanInput, top: Int) -> String {
        let layouts = plan.ranked.prefix(top).map { estimateJSON($0, plan: plan) }
        let tooLarge = plan.tooLarge.prefix(plan.ranked.isEmpty ? top : 0).map {
            "{\"name\": \(jsonString($0.layout.name)), \"fits\": false, \"memory_bytes\": \(memoryJSON($0.memory, limit: $0.memoryLimit))}"
        }
        return "{\"workload\": \(workloadJSON(input)), \"considered\": \(plan.considered), \"fitting\": \(plan.fitting),\n"
            + "\"layouts\": [\n  " + (layouts + tooLarge).joined(separator: ",\n  ") + "\n],\n"
            + "\"best_per_strategy\": [\n  " + plan.bestPerStrategy.map { estimateJSON($0, plan: plan) }.joined(separator: ",\n  ")
            + "\n]}"
    }

    static func memoryJSON(_ memory: MemoryBreakdown, limit: Double) -> String {
        "{\"parameters\": \(memory.parameters), \"gradients\": \(memory.gradients), "
            + "\"optimizer_state\": \(memory.optimizerState), \"activations\": \(memory.activations), "
            + "\"buffers\": \(memory.buffers), \"total\": \(memory.total), \"limit\": \(limit)}"
    }

    static func estimateJSON(_ estimate: LayoutEstimate, plan: Plan) -> String {
        let layout = estimate.layout, memory = estimate.memory, time = estimate.time
        let fields: [(String, String)] = [
            ("name", jsonString(layout.name)), ("strategy", jsonString(layout.strategy)), ("tp", "\(layout.tensor)"),
            ("pp", "\(layout.pipeline)"), ("dp", "\(layout.data)"), ("schedule", jsonString(layout.schedule.rawValue)),
            ("virtual_stages", "\(layout.virtualStages)"), ("micro_batch_size", "\(layout.microBatchSize)"),
            ("micro_batches", "\(layout.microBatches)"), ("zero_stage", "\(layout.zeroStage)"),
            ("sequence_parallel", "\(layout.sequenceParallel)"), ("recomputed_layers_per_chunk", "\(layout.recomputedLayers)"),
            ("fits", "\(estimate.fits)"),
            ("memory_bytes", memoryJSON(memory, limit: estimate.memoryLimit)),
            ("time_seconds", "{\"compute\": \(time.compute), \"tensor_parallel\": \(time.tensorParallel), "
                + "\"pipeline_bubble\": \(time.pipelineBubble), \"pipeline_transfer\": \(time.pipelineTransfer), "
                + "\"data_parallel\": \(time.dataParallel), \"fsdp\": \(time.fsdp), \"optimizer\": \(time.optimizer), "
                + "\"step\": \(time.step)}"),
            ("traffic_bytes_per_device", "{\"tensor_parallel\": \(estimate.traffic.tensorParallel), \"pipeline\": \(estimate.traffic.pipeline), "
                + "\"data_parallel\": \(estimate.traffic.dataParallel), \"fsdp\": \(estimate.traffic.fsdp), "
                + "\"total\": \(estimate.traffic.total), \"between_nodes\": \(estimate.traffic.interNode)}"),
            ("tokens_per_second", "\(estimate.tokensPerSecond)"), ("mfu", "\(estimate.mfu)"),
            ("hardware_tflops_per_device", "\(estimate.hardwareFLOPsPerDevice / 1e12)"),
            ("why_slower", jsonString(plan.whySlower(estimate))),
        ]
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    static func workloadJSON(_ input: PlanInput) -> String {
        let model = input.workload.model, cluster = input.cluster, assumptions = input.assumptions
        return "{\"model\": \(jsonString(input.modelName)), \"arch\": \(jsonString(model.architecture.rawValue)), "
            + "\"n_layer\": \(model.layers), \"d_model\": \(model.width), \"n_head\": \(model.heads), "
            + "\"n_kv_head\": \(model.kvHeads), \"d_ff\": \(model.hiddenWidth), \"vocab_size\": \(model.vocabSize), "
            + "\"parameters\": \(ModelCost(model).parameters), \"seq_len\": \(input.workload.sequenceLength), "
            + "\"global_batch\": \(input.workload.globalBatch), \"devices\": \(cluster.devices), "
            + "\"gpus_per_node\": \(cluster.devicesPerNode), \"accelerator\": \(jsonString(cluster.accelerator.name)), "
            + "\"peak_tflops\": \(cluster.accelerator.peakFLOPs / 1e12), \"memory_gb\": \(cluster.accelerator.memoryBytes / 1e9), "
            + "\"intra_node\": \(jsonString(cluster.intraNode.name)), \"inter_node\": \(jsonString(cluster.interNode.name)), "
            + "\"efficiency\": \(assumptions.efficiency), \"attention\": \(jsonString(assumptions.attention.rawValue))}"
    }

    static func sweepText(_ points: [StrategySweep.Point], input: PlanInput) -> String {
        let out = header(input, devices: "nodes of") + "\n\n"
        var rows = [["devices", "strategy", "best layout", "step", "tokens/s", "MFU", "exposed communication",
                     "sent between nodes", "memory"]]
        for point in points {
            for best in point.best {
                let time = best.time
                let communication = time.tensorParallel + time.pipelineTransfer + time.dataParallel + time.fsdp
                rows.append([String(point.devices), best.layout.strategy, best.layout.name, Plan.formatSeconds(time.step),
                             count(best.tokensPerSecond), percent(best.mfu),
                             Plan.formatSeconds(communication) + " (" + percent(communication / time.step) + ")",
                             String(format: "%.1f GB/device", best.traffic.interNode / 1e9),
                             String(format: "%.1f GB", best.memory.total / 1e9)])
            }
            for name in point.missing {
                rows.append([String(point.devices), name, "none fits or divides"])
            }
        }
        return out + align(rows)
    }

    static func sweepJSON(_ points: [StrategySweep.Point], input: PlanInput) -> String {
        let items = points.map { point in
            "{\"devices\": \(point.devices), \"best\": [" + point.best.map { best in
                "{\"strategy\": \(jsonString(best.layout.strategy)), \"layout\": \(jsonString(best.layout.name)), "
                    + "\"step_seconds\": \(best.time.step), \"tokens_per_second\": \(best.tokensPerSecond), \"mfu\": \(best.mfu), "
                    + "\"memory_bytes\": \(best.memory.total), \"inter_node_bytes\": \(best.traffic.interNode)}"
            }.joined(separator: ", ") + "], \"missing\": [" + point.missing.map(jsonString).joined(separator: ", ") + "]}"
        }
        return "{\"workload\": \(workloadJSON(input)), \"points\": [\n  " + items.joined(separator: ",\n  ") + "\n]}"
    }

    /// Columns padded to their widest cell, two spaces apart.
    static func align(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.map(\.count).max() ?? 0)).map { column in
            rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    static func percent(_ share: Double) -> String { String(format: "%.1f%%", share * 100) }

    /// A count with k/M/G.
    static func count(_ value: Double) -> String {
        if value >= 1e9 { return String(format: "%.2fG", value / 1e9) }
        if value >= 1e6 { return String(format: "%.2fM", value / 1e6) }
        if value >= 1e3 { return String(format: "%.1fk", value / 1e3) }
        return String(format: "%.0f", value)
    }
}
