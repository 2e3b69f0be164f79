import ArgumentParser
import Foundation
import KeelCore
import KeelData
import KeelComm
import KeelCheckpoint
import KeelInference
import KeelModel
import KeelTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model from a TOML config.",
        discussion: """
            Writes DIR/config.toml, DIR/metrics.jsonl (one JSON object per step) and \
            DIR/checkpoints/step_N/. Override any config key with --set, e.g. --set training.steps=20. \
            With --resume, continues bit-exactly from the newest valid checkpoint in DIR (using \
            DIR/config.toml when --config is not given). Started by mpirun, srun or `keel launch`, the \
            processes form parallel.pp pipeline stages × parallel.tp tensor-parallel ranks × parallel.dp data-parallel replicas (each replica reads \
            training.batch_size sequences per micro-batch); rank 0 writes the log and metrics, every rank its share of each checkpoint. SIGTERM, SIGUSR1 (Slurm's \
            pre-emption warning) or Ctrl-C on any rank: every rank finishes the current step, a checkpoint is \
            written and keel exits 75 (not finished: resume it; 0 means the run reached training.steps); a second Ctrl-C \
            exits at once.
            """)

    @Option(name: .shortAndLong, help: "TOML config file.")
    var config: String?

    @Option(name: .shortAndLong, help: "Run directory (default: runs/<config name>).")
    var out: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key.", valueName: "section.key=value"))
    var overrides: [String] = []

    @Flag(help: "Continue from the newest valid checkpoint in the run directory.")
    var resume = false

    @Flag(help: "Continue as --resume does when the job has a valid checkpoint or in-memory snapshot on any of its machines, else start from the beginning (what `keel launch --max-restarts` adds when it restarts a job).")
    var resumeIfAny = false

    @Flag(help: "With --resume, go on although the data, its tokenizer, training.seq_len or data.document_masking differ from the checkpoint's (refused otherwise: the saved data position means nothing in another order of windows).")
    var acceptChangedData = false

    @Option(help: ArgumentHelp("Start from this run's or checkpoint's weights (fine-tuning; training.init_from).", valueName: "dir"))
    var initFrom: String?

    @Option(help: ArgumentHelp("Stop after this step (checkpointing it), as if interrupted; finish later with --resume.", valueName: "step"))
    var stopAfter: Int?

    @Option(help: ArgumentHelp("Write every rank's timeline of passes, waits and sends as a Chrome trace (Perfetto, chrome://tracing).", valueName: "file"))
    var trace: String?

    @Option(help: ArgumentHelp("With --trace, the steps to record, from this run's first (0: every step; each step's passes stay in every rank's memory until the run ends).", valueName: "n"))
    var traceSteps = 100

    @Flag(help: "Print where rank 0's steps went (time per kind of kernel, forward and backward, and the tensor group's collectives), after the first step.")
    var profile = false

    @Option(help: ArgumentHelp("Serve the newest metrics for Prometheus at http://HOST:PORT/metrics while training (0: any free port).", valueName: "port"))
    var metricsPort: Int?

    @Option(help: ArgumentHelp("Address the metrics endpoint listens on (0.0.0.0 for other machines' Prometheus).", valueName: "ipv4"))
    var metricsHost = "127.0.0.1"

    func validate() throws {
        if resume && resumeIfAny { throw ValidationError("give --resume or --resume-if-any, not both") }
        if acceptChangedData && !(resume || resumeIfAny) { throw ValidationError("--accept-changed-data goes with --resume or --resume-if-any") }
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be in 0...65535") }
        if traceSteps < 0 { throw ValidationError("--trace-steps must not be negative (got \(traceSteps))") }
        var address = in_addr()
        guard inet_pton(AF_INET, metricsHost, &address) == 1 else { throw ValidationError("--metrics-host \(metricsHost) is not an IPv4 address") }
        // The trace is written after the last step: a place it cannot go must fail before training, not after.
        if let trace {
            let directory = URL(fileURLWithPath: trace).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--trace: the directory \(directory) does not exist")
            }
        }
    }

    /// The run directory: `--out`, else runs/<the config file's name>.
    static func runDirectory(out: String?, config: String?) -> String? {
        out ?? config.map { "runs/" + URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
    }

    func run() throws {
        // From now on SIGTERM, SIGUSR1 and Ctrl-C stop training after the current step, with a checkpoint.
        StopSignals.install()
        guard let directory = Self.runDirectory(out: out, config: config) else {
            throw ValidationError("give --config FILE (and optionally --out DIR), or --resume --out DIR")
        }
        let output = URL(fileURLWithPath: directory)
        var configPath = config
        if configPath == nil {
            let saved = output.appendingPathComponent("config.toml").path
            guard resume || resumeIfAny, FileManager.default.fileExists(atPath: saved) else {
                throw ValidationError("give --config FILE (or --resume with a run directory that has config.toml)")
            }
            configPath = saved
        }
        // --init-from is training.init_from, saved with the run's config.
        if initFrom != nil { try Train.refuseTwoStarts(overrides) }
        let initOverride = initFrom.map { path in
            "training.init_from=\"" + path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var settings = try TrainConfig.load(path: configPath, overrides: overrides + (initOverride.map { [$0] } ?? []))
        // A run begun by a Keel that padded the vocabulary to a multiple of tp resumes with its padded size, which only
        // its saved config.toml records, also when the job gives its own --config (a restart keeps the command line).
        if resume || resumeIfAny, config != nil, !settings.givenKeys.contains("model.vocab_size"),
           let saved = try? TrainConfig(toml: String(contentsOf: output.appendingPathComponent("config.toml"), encoding: .utf8),
                                        origin: "config.toml", requiresData: false),
           saved.givenKeys.contains("model.vocab_size"), saved.model.vocabSize != settings.model.vocabSize {
            settings = try TrainConfig.load(path: configPath, overrides: overrides + (initOverride.map { [$0] } ?? [])
                                                + ["model.vocab_size=\(saved.model.vocabSize)"])
        }
        let placement = try ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        guard placement.isDistributed else {
            let processes = settings.parallel.processes
            if processes > 1 {
                throw ValidationError("parallel.pp × parallel.tp × parallel.dp needs \(processes) processes; start them with `mpirun -n \(processes) keel train …` (or srun, or `keel launch`)")
            }
            var stopped = false
            try DistributedRun.runAlone { stopped = try train(settings, output: output, groups: .singleProcess()) }
            if stopped { throw ExitCode(DistributedRun.stoppedStatus) }
            return
        }
        var stopped = false
        try DistributedRun.run(placement: placement, timeout: settings.distributed.timeoutSeconds) { world in
            try DistributedRun.requireSameSettings(settings, flags: ["resume \(resume)", "resume-if-any \(resumeIfAny)",
                                                                           "accept-changed-data \(acceptChangedData)"], on: world)
            _ = try settings.parallel.dataParallelSize(processes: world.size)
            let mesh = try Mesh(worldSize: world.size, pipeline: settings.parallel.pipeline, tensor: settings.parallel.tensor)
            stopped = try train(settings, output: output, groups: ParallelState(mesh: mesh, world: world))
        }
        // After MPI is shut down: every rank ends with the status, which mpirun and srun pass on.
        if stopped { throw ExitCode(DistributedRun.stoppedStatus) }
    }

    /// Trains; returns whether a stop signal ended the run before its last step (with a checkpoint).
    private func train(_ settings: TrainConfig, output: URL, groups: ParallelState) throws -> Bool {
        // The port is taken before anything else happens, so that a port in use fails the run at once.
        var server: HTTPServer?
        if let metricsPort, groups.world.rank == 0 {
            do {
                // A scraper or two; more connections would only take the run's threads and descriptors.
                server = try HTTPServer(host: metricsHost, port: metricsPort, maxConnections: 16)
            } catch let error as KeelError {
                throw KeelError("--metrics-port: \(error.message)")
            }
        }
        let trainer = try Trainer(config: settings, output: output, start: resume ? .resume : resumeIfAny ? .resumeIfAny : .fresh,
                                  acceptingChangedData: acceptChangedData, groups: groups) { message in
            StandardStreams.error(message + "\n")
        }
        let profiler = profile ? Profiler() : nil
        let summary = try trainer.run(stopAfter: stopAfter, trace: trace.map { URL(fileURLWithPath: $0) }, traceSteps: traceSteps,
                                      profiler: profiler) { log in
            guard let server else { return }
            MetricsEndpoint.serve(log, on: server)
            StandardStreams.error("metrics: Prometheus text at http://\(metricsHost):\(server.port)/metrics\n")
        }
        guard groups.world.rank == 0 else { return summary.stoppedBy != nil }
        if let profiler { print(profiler.report()) }
        if let signal = summary.stoppedBy {
            DistributedRun.recordStop(signal: StopSignals.name(of: signal), step: summary.steps)
            print("stopped by \(StopSignals.name(of: signal)) after step \(summary.steps)")
            print("checkpoint: \(summary.checkpoint.path)")
            print("continue with: keel train --resume --out \(output.path)")
            return true
        }

        var lines: [String] = []
        let start = summary.initialValidationLoss.map { String(format: "%.4f at step 0 → ", $0) } ?? ""
        let final = summary.finalValidationLoss!
        let below = (1 - Double(final) / summary.unigramLoss) * 100
        lines.append(String(format: "validation loss: %@%.4f at step %d", start, final, summary.steps))
        // Chat data has no unigram baseline: its loss counts only what the assistant writes.
        if !summary.unigramLoss.isNaN {
            lines.append(String(format: "unigram baseline: %.4f (the model is %.1f%% %@ it)", summary.unigramLoss, abs(below),
                                below >= 0 ? "below" : "still above"))
        }
        if summary.stepsRun > 0 {
            lines.append(String(format: "throughput: %.0f tokens/s", summary.tokensPerSecond))
        } else {
            let limit = stopAfter.flatMap { $0 < settings.training.steps ? "--stop-after is \($0)" : nil }
            lines.append("nothing trained: the run is at step \(summary.steps) and \(limit ?? "training.steps is \(settings.training.steps)")")
        }
        lines.append("checkpoint: \(summary.checkpoint.path)")
        print(lines.joined(separator: "\n"))
        if settings.sample.tokens > 0 {
            print("sample (temperature \(settings.sample.temperature), top-k \(settings.sample.topK)):")
            // A pipeline rank holds only its stages: sample from the whole model the checkpoint holds.
            let model = try trainer.model ?? CheckpointReader(summary.checkpoint).loadModel()
            print(try Sampling.generate(model: model, tokenizer: trainer.tokenizer, textStart: trainer.textStart,
                                        prompt: settings.sample.prompt,
                                        tokens: settings.sample.tokens,
                                    temperature: settings.sample.temperature, topK: settings.sample.topK,
                                    seed: settings.training.seed))
        }
        return false
    }
}

extension Train {
    /// Refuses `--set training.init_from` beside `--init-from`: one of the two starting points would be dropped
    /// without a word (the later override wins).
    static func refuseTwoStarts(_ overrides: [String]) throws {
        if overrides.contains(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("training.init_from") }) {
            throw ValidationError("--init-from and --set training.init_from both name the starting weights; give one")
        }
    }
}

/// Text generation shared by `train` (the closing sample) and `sample`: the prompt and its continuation.
enum Sampling {
    /// The model reads the prompt after `textStart`, the token the tokenizer puts before every text
    /// (`TokenizerSettings.beginningOfTextToken(in:)`), when it has one; the text returned does not show it.
    static func generate(
        model: Transformer, tokenizer: any TextTokenizer, textStart: Int32?, prompt: String, tokens: Int, temperature: Double,
        topK: Int, seed: UInt64
    ) throws -> String {
        // Only ids the tokenizer can decode: a model's vocabulary may be padded beyond.
        let options = SamplingOptions(temperature: Float(temperature), topK: topK, seed: seed, vocabulary: tokenizer.vocabSize)
        let prompt = tokenizer.encode(prompt), read = InferenceModel.prompt(prompt, beginningOfText: textStart, endOfText: tokenizer.endOfText)
        // A stop signal (SIGTERM, Ctrl-C) after training ends the closing sample too, with the text so far.
        let generated = try Decoder(model: model).generate(prompts: [read], maxTokens: tokens, options: options, textStart: textStart,
                                                           shouldStop: { _, _ in StopSignals.received != nil })[0]
        return try tokenizer.decodeText(prompt + generated)
    }
}
