import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelTrain

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Look into checkpoints.", subcommands: [Inspect.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print what a checkpoint holds and verify every file's size and checksum.",
            discussion: """
                Given a run directory, lists its checkpoints (newest first) with their state, then inspects the \
                newest valid one. Given one checkpoint directory, inspects it: the training state, the model, \
                the tensors and every file with its recorded size and XXH64. Exits non-zero, naming the file, \
                when a file is missing, truncated or fails its checksum.
                """)

        @Argument(help: "Run directory, its checkpoints/ folder, or one checkpoint directory.")
        var path: String

        func run() throws {
            let url = URL(fileURLWithPath: path)
            let isCheckpoint = FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path)
            if !isCheckpoint {
                let root = FileManager.default.fileExists(atPath: url.appendingPathComponent("checkpoints").path)
                    ? url.appendingPathComponent("checkpoints") : url
                let all = CheckpointStore.list(root)
                guard !all.isEmpty else { throw KeelError("\(path): no checkpoints there") }
                print("checkpoints in \(root.path), newest first:")
                for checkpoint in all {
                    let problem: String? = (try? CheckpointStore.inspect(checkpoint)).map { $0.compactMap(\.problem).first }
                        ?? "no readable manifest.json"
                    print("  \(checkpoint.lastPathComponent)  \(problem.map { "DAMAGED: \($0)" } ?? "valid")")
                }
                print("")
            }
            let directory = try ModelFiles.resolveCheckpoint(path)
            let files = try CheckpointStore.inspect(directory)
            print("checkpoint: \(directory.path)")
            let state = try TrainingState.read(from: directory.appendingPathComponent("state.json"))
            print("state: step \(state.step), \(state.tokens) tokens, \(state.samplesConsumed) samples consumed, seed \(state.seed), tokenizer \(state.tokenizer), \(String(format: "%.0f", state.elapsedSeconds)) s of training")
            let model = try ModelFiles.readConfig(from: directory.appendingPathComponent(ModelFiles.configFile))
            print("model: \(model.architecture.rawValue), \(model.layers) layers, \(model.heads) heads (\(model.kvHeads) key/value), width \(model.width), d_ff \(model.hiddenWidth), vocabulary \(model.vocabSize), max_seq_len \(model.maxLength)")
            print("files:")
            for file in files {
                let status = file.problem.map { "DAMAGED: \($0)" } ?? "ok"
                print("  \(file.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(String(file.recorded.bytes).leftPadded(to: 12)) bytes  xxh64 \(file.recorded.xxh64)  \(status)")
            }
            if let problem = files.compactMap(\.problem).first {
                throw KeelError("checkpoint \(directory.path) is damaged: \(problem)")
            }
            print("every file matches its recorded size and checksum")
            let weights = try SafetensorsFile(url: directory.appendingPathComponent(ModelFiles.weightsFile))
            let parameters = weights.entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
            print("weights: \(weights.entries.count) tensors, \(parameters) parameters (\(weights.entries.values.first?.dtype.rawValue ?? "-"))")
        }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
