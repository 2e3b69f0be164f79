import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelTrain

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Look into and convert checkpoints.", subcommands: [Inspect.self, Convert.self])

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
            // Each checkpoint's files are read and hashed once (a large model's are hundreds of gigabytes): the newest
            // valid one found while listing is the one inspected.
            var newestValid: (directory: URL, files: [CheckpointStore.FileStatus])?
            if !isCheckpoint {
                let root = FileManager.default.fileExists(atPath: url.appendingPathComponent("checkpoints").path)
                    ? url.appendingPathComponent("checkpoints") : url
                let all = CheckpointStore.list(root)
                guard !all.isEmpty else { throw KeelError("\(path): no checkpoints there") }
                print("checkpoints in \(root.path), newest first:")
                for checkpoint in all {
                    let files = try? CheckpointStore.inspect(checkpoint)
                    let problem: String? = files.map { $0.compactMap(\.problem).first } ?? "no readable manifest.json"
                    print("  \(checkpoint.lastPathComponent)  \(problem.map { "DAMAGED: \($0)" } ?? "valid")")
                    if problem == nil, newestValid == nil, let files { newestValid = (checkpoint, files) }
                }
                print("")
            }
            let directory = try newestValid?.directory ?? ModelFiles.resolveCheckpoint(path)
            let files = try newestValid?.files ?? CheckpointStore.inspect(directory)
            print("checkpoint: \(directory.path)")
            let checkpoint = try CheckpointReader(directory, verify: false)
            let state = checkpoint.state, model = checkpoint.model
            print("state: step \(state.step), \(state.tokens) tokens, \(state.samplesConsumed) samples consumed, seed \(state.seed), tokenizer \(state.tokenizer), \(String(format: "%.0f", state.elapsedSeconds)) s of training")
            print("model: \(model.architecture.rawValue), \(model.layers) layers, \(model.heads) heads (\(model.kvHeads) key/value), width \(model.width), d_ff \(model.hiddenWidth), vocabulary \(model.vocabSize), max_seq_len \(model.maxLength)")
            if let manifest = checkpoint.manifest {
                let stages = manifest.layout.stageLayers.enumerated().map { "\($0.offset):\($0.element.lowerBound)..<\($0.element.upperBound)" }
                print("written by: \(manifest.layout.summary); blocks by stage \(stages.joined(separator: " ")) (format \(manifest.format): readable by any layout)")
                for (kind, tensors) in manifest.tensors.sorted(by: { $0.key > $1.key }) {
                    let elements = tensors.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
                    let slices = tensors.values.reduce(0) { $0 + $1.slices.count }
                    let split = tensors.values.filter { $0.pieces > 1 }.count
                    print("\(kind): \(tensors.count) tensors, \(elements) elements (F32) in \(slices) slices; \(split) tensors cut into tensor-parallel pieces")
                }
            } else {
                print("written by: an earlier Keel, consolidated (model.safetensors, optimizer.safetensors)")
            }
            print("files:")
            for file in files {
                let status = file.problem.map { "DAMAGED: \($0)" } ?? "ok"
                print("  \(file.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(String(file.recorded.bytes).leftPadded(to: 12)) bytes  xxh64 \(file.recorded.xxh64)  \(status)")
            }
            if let problem = files.compactMap(\.problem).first {
                throw KeelError("checkpoint \(directory.path) is damaged: \(problem)")
            }
            print("every file matches its recorded size and checksum")
        }
    }

    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a checkpoint's model, whatever layout wrote it, as one consolidated file or a Hugging Face directory.",
            discussion: """
                --to safetensors writes OUT as one safetensors file of every weight under its Hugging Face name \
                (what PyTorch's safetensors.torch.load_file reads); --to hf writes what keel export hf writes: \
                OUT/config.json, OUT/model.safetensors and the tokenizer's files, which \
                transformers.AutoModelForCausalLM.from_pretrained(OUT) and AutoTokenizer load (OUT new, empty or \
                an earlier export's). The \
                checkpoint's checksums are verified first; OUT is written atomically.
                """)

        @Argument(help: "Run directory (newest valid checkpoint), its checkpoints/ folder, or one checkpoint directory.")
        var path: String

        @Option(name: .shortAndLong, help: "File (--to safetensors) or directory (--to hf) to write.")
        var out: String

        @Option(help: "safetensors or hf.")
        var to: String = "safetensors"

        func validate() throws {
            guard ["safetensors", "hf"].contains(to) else { throw ValidationError("--to must be safetensors or hf (got \(to))") }
        }

        func run() throws {
            let checkpoint = try CheckpointReader(resolving: path)
            let url = URL(fileURLWithPath: out)
            if to == "hf" {
                let names = try Export.HuggingFace.write(checkpoint, to: url)
                print("wrote \(names.map { "\(out)/\($0)" }.joined(separator: ", ")) from \(checkpoint.directory.path)")
            } else {
                let model = try checkpoint.loadModel()
                try ModelFiles.writeWeights(of: model, to: url)
                print("wrote \(out): \(model.table.entries.count) tensors, \(model.table.count) parameters from \(checkpoint.directory.path)")
            }
        }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
