import ArgumentParser
import Foundation
import KeelCore
import KeelPlan
import KeelPlot
import KeelTrain

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Predict memory, step time and MFU of every parallel layout of a model on a cluster, best first.",
        discussion: """
            Input is a TOML file (--config) with [model], [workload], [cluster], [layout] and [assumptions] \
            sections, flags, or both (flags win). Every layout of tensor × pipeline × data ranks, schedule, \
            micro-batches, virtual stages, ZeRO stage / FSDP, sequence parallelism and recomputation that divides \
            the model and the batch is estimated: memory on the busiest device, the step split into compute, \
            tensor-parallel communication, pipeline bubble and messages, data-parallel and FSDP communication and \
            the optimizer, tokens/s and MFU. Those that fit are ranked; the last column says why each is slower \
            than the first. --validate compares the planner with published runs; --sweep-gpus shows the best \
            layout of each strategy as the cluster grows. Formulas: docs/planner.md.
            """)

    @Option(help: "TOML file with the plan's keys.") var config: String?
    @Option(help: "Model preset (\(ModelPresets.all.map(\.name).joined(separator: ", "))).") var model: String?
    @Option(name: .customLong("seq-len"), help: "Tokens per sequence.") var seqLen: Int?
    @Option(help: "Sequences per optimizer step.") var globalBatch: Int?
    @Option(help: "Tokens per optimizer step (instead of --global-batch).") var globalBatchTokens: Int?
    @Option(help: "Accelerator preset (\(Accelerator.presets.map(\.name).joined(separator: ", ")), or this-cpu: this machine as keel bench --machine measures it).") var accelerator: String?
    @Option(help: "Devices in all (a multiple of --gpus-per-node, or fewer).") var gpus: Int?
    @Option(help: "Nodes (instead of --gpus).") var nodes: Int?
    @Option(help: "Devices per node.") var gpusPerNode: Int?
    @Option(help: "Link inside a node (\(Link.presets.map(\.name).joined(separator: ", "))).") var intraNode: String?
    @Option(help: "Link between nodes.") var interNode: String?
    @Option(help: "Only this tensor-parallel size.") var tp: Int?
    @Option(help: "Only this pipeline size.") var pp: Int?
    @Option(help: "Only this data-parallel size.") var dp: Int?
    @Option(help: "Only these strategies, comma-separated (\(LayoutChoices.strategyNames.joined(separator: ", "))).")
    var strategy: String?
    @Option(name: .customLong("set"), help: "section.key=value, as in the TOML file (repeatable).") var assignments: [String] = []
    @Option(help: "Layouts to list.") var top = 10
    @Flag(help: "Print JSON instead of tables.") var json = false
    @Flag(help: "Compare the planner with published runs (Megatron-LM SC '21 Table 1, Llama 3 Table 4).") var validate = false
    @Option(help: "Comma-separated device counts: the best layout of each strategy at each (fixed global batch).")
    var sweepGpus: String?
    @Option(help: "With --sweep-gpus: write an SVG chart of MFU against devices per strategy.") var plot: String?

    func run() throws {
        if plot != nil, sweepGpus == nil { throw ValidationError("--plot charts a sweep: give --sweep-gpus too") }
        if validate { return try runValidation() }
        var values = try config.map { path -> ConfigValues in
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw KeelError("plan: cannot read \(path)") }
            return try ConfigValues(toml: text, origin: path)
        } ?? ConfigValues(toml: "", origin: "flags")
        try values.override(flagAssignments() + assignments)
        let input = try PlanInput(&values)
        if let sweepGpus { return try runSweep(input, devices: sweepGpus) }
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
        let plan = try Planner.plan(input.workload, cluster: input.cluster, assumptions: input.assumptions, choices: input.choices,
                                    top: top)
        if json {
            print(PlanOutput.json(plan, input: input, top: top))
        } else {
            print(PlanOutput.text(plan, input: input, top: top))
        }
    }

    /// The flags as `section.key=value` assignments, applied over the TOML file.
    private func flagAssignments() -> [String] {
        func quoted(_ text: String) -> String { "\"\(text)\"" }
        func list(_ text: String) -> String { "[" + text.split(separator: ",").map { quoted(String($0)) }.joined(separator: ", ") + "]" }
        var out: [String] = []
        if let model { out.append("model.preset=\(quoted(model))") }
        if let seqLen { out.append("workload.seq_len=\(seqLen)") }
        if let globalBatch { out.append("workload.global_batch=\(globalBatch)") }
        if let globalBatchTokens { out.append("workload.global_batch_tokens=\(globalBatchTokens)") }
        if let accelerator { out.append("cluster.accelerator=\(quoted(accelerator))") }
        if let gpus { out.append("cluster.gpus=\(gpus)") }
        if let nodes { out.append("cluster.nodes=\(nodes)") }
        if let gpusPerNode { out.append("cluster.gpus_per_node=\(gpusPerNode)") }
        if let intraNode { out.append("cluster.intra_node=\(quoted(intraNode))") }
        if let interNode { out.append("cluster.inter_node=\(quoted(interNode))") }
        if let tp { out.append("layout.tp=\(tp)") }
        if let pp { out.append("layout.pp=\(pp)") }
        if let dp { out.append("layout.dp=\(dp)") }
        if let strategy { out.append("layout.strategies=\(list(strategy))") }
        return out
    }

    private func runValidation() throws {
        let rows = try PublishedRun.all.map { run -> (PublishedRun, LayoutEstimate, Double) in
            let (best, flops) = try run.predicted()
            return (run, best, flops)
        }
        if json {
            let objects = rows.map { run, best, flops in
                "{\"run\": \(jsonString(run.name)), \"source\": \(jsonString(run.source)), "
                    + "\"published_tflops\": \(run.flopsPerDevice / 1e12), \"predicted_tflops\": \(flops / 1e12), "
                    + "\"error\": \(flops / run.flopsPerDevice - 1), \"layout\": \(jsonString(best.layout.name)), "
                    + "\"memory_gb\": \(best.memory.total / 1e9), \"fits\": \(best.fits)}"
            }
            print("{\"efficiency\": \(PlanAssumptions.calibratedEfficiency), \"runs\": [\n  "
                + objects.joined(separator: ",\n  ") + "\n]}")
            return
        }
        print("Published runs against the planner (calibration constant: matrix products at "
            + String(format: "%.1f%%", PlanAssumptions.calibratedEfficiency * 100) + " of peak, for every row)\n")
        var table = [["run", "source", "published", "predicted", "error", "best layout as published", "memory"]]
        for (run, best, flops) in rows {
            table.append([run.name, run.source, String(format: "%.0f TFLOP/s", run.flopsPerDevice / 1e12),
                          String(format: "%.1f TFLOP/s", flops / 1e12),
                          String(format: "%+.1f%%", (flops / run.flopsPerDevice - 1) * 100), best.layout.name,
                          String(format: "%.1f GB%@", best.memory.total / 1e9, best.fits ? "" : " (over)")])
        }
        print(PlanOutput.align(table))
        let errors = rows.map { abs($0.2 / $0.0.flopsPerDevice - 1) }
        print(String(format: "\nlargest error %.1f%%, mean %.1f%%", errors.max()! * 100, errors.reduce(0, +) / Double(errors.count) * 100))
        print(String(format: "efficiency that fits these rows best (least squares of log ratios): %.3f", try PublishedRun.fittedEfficiency()))
    }

    private func runSweep(_ input: PlanInput, devices text: String) throws {
        let counts = try text.split(separator: ",").map { item -> Int in
            guard let count = Int(item.trimmingCharacters(in: .whitespaces)), count >= 1 else {
                throw ValidationError("--sweep-gpus: '\(item)' is not a device count")
            }
            return count
        }
        let points = try StrategySweep.run(input.workload, cluster: input.cluster, devices: counts,
                                           assumptions: input.assumptions, choices: input.choices)
        print(json ? PlanOutput.sweepJSON(points, input: input) : PlanOutput.sweepText(points, input: input))
        if let plot {
            let strategies = LayoutChoices.strategyNames.filter { name in points.contains { $0.best.contains { $0.layout.strategy == name } } }
            let series = strategies.map { name in
                LineChart.Series(name: name, points: points.compactMap { point in
                    point.best.first { $0.layout.strategy == name }.map { (Double(point.devices), $0.mfu * 100) }
                }, dashed: name.hasPrefix("fsdp"))
            }
            let chart = LineChart(
                title: "\(input.modelName), \(input.workload.globalBatch) × \(input.workload.sequenceLength) tokens per step, "
                    + "\(input.cluster.accelerator.name), \(input.cluster.interNode.name) between nodes",
                xLabel: "devices", yLabel: "MFU of the best layout (%)", series: series, logarithmicX: true,
                yRange: 0...max(60, (series.flatMap(\.points).map(\.y).max() ?? 0).rounded(.up)))
            try AtomicFile.write(Data(chart.svg().utf8), to: URL(fileURLWithPath: plot))
            if !json { print("wrote \(plot)") }
        }
    }
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])
    let array = String(decoding: data, as: UTF8.self)
    return String(array.dropFirst().dropLast())
}
