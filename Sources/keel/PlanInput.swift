import Foundation
import KeelCore
import KeelModel
import KeelParallel
import KeelPlan
import KeelTrain

/// What `keel plan` plans: a TOML file's `[model]`, `[workload]`, `[cluster]`, `[layout]` and `[assumptions]`
/// keys, each of which a flag can set or override (docs/planner.md lists them).
struct PlanInput {
    var workload: Workload
    var cluster: Cluster
    var assumptions: PlanAssumptions
    var choices: LayoutChoices
    /// The model's name for tables (its preset, or its shape).
    var modelName: String

    init(_ values: inout ConfigValues) throws {
        let model = try PlanInput.model(&values)
        let shape = "\(model.architecture.rawValue) \(model.layers)×\(model.width)"
        modelName = try values.string("model.preset", nil).map { preset in
            (try? ModelPresets.named(preset)) == model ? preset : "\(preset), changed to \(shape)"
        } ?? shape
        let sequence = try values.int("workload.seq_len", model.maxLength)
        let batchTokens = try values.optionalInt("workload.global_batch_tokens")
        let batch = try values.optionalInt("workload.global_batch")
        if batch != nil && batchTokens != nil {
            throw KeelError("plan: give workload.global_batch (sequences) or workload.global_batch_tokens, not both")
        }
        let sequences = batch ?? batchTokens.map { $0 / max(sequence, 1) + ($0 % max(sequence, 1) > 0 ? 1 : 0) } ?? 512
        workload = Workload(model: model, sequenceLength: sequence, globalBatch: sequences)
        let thisMachine = try PlanInput.measuresThisMachine(&values)
        cluster = try PlanInput.cluster(&values)
        assumptions = try PlanInput.assumptions(&values, thisMachine: thisMachine)
        choices = try PlanInput.choices(&values)
        try values.rejectUnknownKeys()
        try workload.validate()
        try cluster.validate()
        try assumptions.validate()
    }

    private static func model(_ values: inout ConfigValues) throws -> ModelConfig {
        var model = try values.string("model.preset", nil).map(ModelPresets.named)
        let arch = try values.string("model.arch", nil)
        if model == nil {
            guard let arch else {
                throw KeelError("plan: give a model: --model PRESET (\(ModelPresets.all.map(\.name).joined(separator: ", "))) "
                    + "or model.arch with model.n_layer, model.n_head, model.d_model")
            }
            guard let architecture = Architecture(rawValue: arch) else {
                throw KeelError("plan: model.arch must be gpt2 or llama (got '\(arch)')")
            }
            func required(_ key: String) throws -> Int {
                guard let value = try values.optionalInt(key) else { throw KeelError("plan: model.arch is set, so \(key) is needed too") }
                return value
            }
            model = ModelConfig(architecture: architecture, vocabSize: 50_257, layers: try required("model.n_layer"),
                                heads: try required("model.n_head"), width: try required("model.d_model"), maxLength: 2048)
        } else if let arch, arch != model!.architecture.rawValue {
            throw KeelError("plan: model.arch '\(arch)' contradicts the preset's \(model!.architecture.rawValue)")
        }
        var config = model!
        config.layers = try values.int("model.n_layer", config.layers)
        config.heads = try values.int("model.n_head", config.heads)
        config.width = try values.int("model.d_model", config.width)
        config.kvHeads = config.architecture == .gpt2 ? config.heads : try values.int("model.n_kv_head", config.kvHeads)
        let defaultHidden = ModelConfig.defaultHiddenWidth(config.architecture, width: config.width)
        config.hiddenWidth = try values.int("model.d_ff", model!.width == config.width ? config.hiddenWidth : defaultHidden)
        config.vocabSize = try values.int("model.vocab_size", config.vocabSize)
        let tied = try values.bool("model.tie_embeddings", config.tiedEmbeddings)
        if config.architecture == .gpt2 && !tied { throw KeelError("plan: GPT-2's head is always its token embedding (model.tie_embeddings must be true)") }
        config.tiedEmbeddings = tied
        return config
    }

    /// Whether the device is this machine, measured (`cluster.accelerator = "this-cpu"`).
    private static func measuresThisMachine(_ values: inout ConfigValues) throws -> Bool {
        try values.string("cluster.accelerator", nil) == "this-cpu"
    }

    private static func cluster(_ values: inout ConfigValues) throws -> Cluster {
        let name = try values.string("cluster.accelerator", "h100-sxm")!
        let thisMachine = name == "this-cpu"
        let gpus = try values.optionalInt("cluster.gpus")
        let nodes = try values.optionalInt("cluster.nodes")
        if gpus != nil && nodes != nil { throw KeelError("plan: give cluster.gpus or cluster.nodes, not both") }
        if let gpus, gpus < 1 { throw KeelError("plan: cluster.gpus must be at least 1 (got \(gpus))") }
        if let nodes, nodes < 1 { throw KeelError("plan: cluster.nodes must be at least 1 (got \(nodes))") }
        // This machine is one node: its processes are the devices.
        let perNode = try values.int("cluster.gpus_per_node", thisMachine ? gpus ?? 1 : 8)
        if thisMachine && (nodes ?? 1) > 1 { throw KeelError("plan: this-cpu is one machine: cluster.nodes must be 1") }
        guard perNode >= 1 else { throw KeelError("plan: cluster.gpus_per_node must be at least 1 (got \(perNode))") }
        if let gpus, gpus > perNode, gpus % perNode != 0 {
            throw KeelError("plan: cluster.gpus (\(gpus)) must be a multiple of cluster.gpus_per_node (\(perNode)), or fewer")
        }
        let perNodeUsed = gpus.map { min($0, perNode) } ?? perNode
        let nodeCount = nodes ?? gpus.map { max(1, $0 / perNode) } ?? 1

        let peak = try values.optionalDouble("cluster.peak_tflops"), memory = try values.optionalDouble("cluster.memory_gb")
        let bandwidth = try values.optionalDouble("cluster.memory_bandwidth_gbs")
        var accelerator: Accelerator
        if thisMachine {
            // Each process is one device: Keel's gemm on its threads, its share of the memory and of the
            // bandwidth all processes' threads reach (`keel bench --machine`), unless given.
            let threads = ThreadPool.shared.threadCount
            let profile = peak != nil && memory != nil && bandwidth != nil ? (0, 0, 0)
                : Benchmark.machineProfile(processes: perNodeUsed)
            accelerator = Accelerator(name: "this-cpu (\(threads) thread\(threads == 1 ? "" : "s") per process)",
                                      peakFLOPs: profile.0 * 1e9, memoryBytes: profile.2, memoryBandwidth: profile.1 * 1e9)
        } else {
            accelerator = try Accelerator.preset(name)
        }
        if let peak { accelerator.peakFLOPs = peak * 1e12 }
        // In GiB, as the presets and the datasheets' "80GB" mean it: `memory_gb = 80` is an 80GB card.
        if let memory { accelerator.memoryBytes = memory * 1_073_741_824 }
        if let bandwidth { accelerator.memoryBandwidth = bandwidth * 1e9 }

        var intra = try Link.preset(values.string("cluster.intra_node", "nvlink4")!)
        var inter = try Link.preset(values.string("cluster.inter_node", "ib-ndr")!)
        let intraBandwidth = try values.optionalDouble("cluster.intra_node_gbs")
        if thisMachine && perNodeUsed > 1 && intraBandwidth == nil {
            throw KeelError("plan: with this-cpu, measure the link between processes first: `keel launch --nproc 2 -- collectives --link` "
                + "prints the --set cluster.intra_node_gbs=… --set cluster.intra_node_latency_us=… to add")
        }
        if let intraBandwidth { intra.bandwidth = intraBandwidth * 1e9 }
        if let bandwidth = try values.optionalDouble("cluster.inter_node_gbs") { inter.bandwidth = bandwidth * 1e9 }
        if let latency = try values.optionalDouble("cluster.intra_node_latency_us") { intra.latency = latency * 1e-6 }
        if let rate = try values.optionalDouble("cluster.intra_node_reduce_scatter_gbs") { intra.reduceScatterBandwidth = rate * 1e9 }
        if let rate = try values.optionalDouble("cluster.intra_node_all_gather_gbs") { intra.allGatherBandwidth = rate * 1e9 }
        if let latency = try values.optionalDouble("cluster.inter_node_latency_us") { inter.latency = latency * 1e-6 }
        if thisMachine { intra.name = "measured" }
        return Cluster(accelerator: accelerator, devicesPerNode: perNodeUsed, nodes: nodeCount, intraNode: intra, interNode: inter)
    }

    private static func assumptions(_ values: inout ConfigValues, thisMachine: Bool) throws -> PlanAssumptions {
        let attentionName = try values.string("assumptions.attention", "flash")!
        guard let attention = AttentionKind(rawValue: attentionName) else {
            throw KeelError("plan: assumptions.attention must be flash or materialized (got '\(attentionName)')")
        }
        let precisionName = try values.string("assumptions.precision", thisMachine ? "fp32" : "bf16")!
        guard let precision = PlanPrecision(rawValue: precisionName) else {
            throw KeelError("plan: assumptions.precision must be bf16 or fp32 (got '\(precisionName)')")
        }
        // On this machine the measured gemm rate is the achievable one: no share of a datasheet peak to calibrate.
        // And MPI moves shared memory with the same cores that compute, so its time does not hide behind compute.
        return PlanAssumptions(
            efficiency: try values.double("assumptions.efficiency", thisMachine ? 1 : PlanAssumptions.calibratedEfficiency),
            attention: attention, gradientBytes: Double(try values.int("assumptions.gradient_bytes", 4)),
            overlapDataParallel: try values.bool("assumptions.overlap", !thisMachine),
            memoryHeadroom: try values.double("assumptions.memory_headroom", 0.1), precision: precision)
    }

    private static func choices(_ values: inout ConfigValues) throws -> LayoutChoices {
        var choices = LayoutChoices()
        choices.tensor = try values.optionalInt("layout.tp")
        choices.pipeline = try values.optionalInt("layout.pp")
        choices.data = try values.optionalInt("layout.dp")
        for (key, value) in [("layout.tp", choices.tensor), ("layout.pp", choices.pipeline), ("layout.dp", choices.data)] {
            if let value, value < 1 { throw KeelError("plan: \(key) must be at least 1 (got \(value))") }
        }
        let schedules = try values.strings("layout.schedules")
        if !schedules.isEmpty {
            choices.schedules = try schedules.map { name in
                guard let schedule = PipelineSchedule(rawValue: name) else {
                    throw KeelError("plan: unknown schedule '\(name)' in layout.schedules (gpipe, 1f1b, interleaved, zb-h1)")
                }
                return schedule
            }
        }
        if let zero = try values.optionalInt("layout.zero") {
            guard (0...3).contains(zero) else { throw KeelError("plan: layout.zero must be 0, 1, 2 or 3 (got \(zero))") }
            choices.zeroStages = [zero]
        }
        choices.microBatchSize = try values.optionalInt("layout.micro_batch_size")
        choices.maxMicroBatchSize = try values.int("layout.max_micro_batch_size", choices.maxMicroBatchSize)
        choices.maxVirtualStages = try values.int("layout.max_virtual_stages", choices.maxVirtualStages)
        guard choices.maxVirtualStages >= 1 else { throw KeelError("plan: layout.max_virtual_stages must be at least 1 (below 2: no interleaving)") }
        if let size = choices.microBatchSize, size < 1 { throw KeelError("plan: layout.micro_batch_size must be at least 1") }
        guard (1...1 << 20).contains(choices.maxMicroBatchSize) else {
            throw KeelError("plan: layout.max_micro_batch_size must be from 1 to \(1 << 20) (got \(choices.maxMicroBatchSize))")
        }
        if let parallel = try values.optionalBool("layout.sequence_parallel") { choices.sequenceParallel = [parallel] }
        let recompute = try values.strings("layout.recompute")
        if !recompute.isEmpty {
            choices.recompute = try recompute.map { name in
                guard let choice = RecomputeChoice(rawValue: name) else {
                    throw KeelError("plan: layout.recompute takes none, as-needed or full (got '\(name)')")
                }
                return choice
            }
        }
        choices.strategies = try values.strings("layout.strategies")
        for name in choices.strategies where !LayoutChoices.strategyNames.contains(name) {
            throw KeelError("plan: unknown strategy '\(name)' (\(LayoutChoices.strategyNames.joined(separator: ", ")))")
        }
        return choices
    }
}
