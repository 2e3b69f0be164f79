import Foundation
import KeelCore
import KeelData

/// What makes a fine-tuning run (`keel dpo`, `keel reward train`, `keel grpo`) what it is besides its config: the
/// command's options that change its steps (`--beta`, `--loss`, …, as given; config keys, `training.seq_len`, by their
/// dotted names) and a fingerprint of its data's tokens.
/// Each checkpoint keeps it (`fileName`); a resume with other options or other data is refused, naming what
/// differs — it would not continue the run but start another from its middle, with reference values (DPO's) or an
/// order of examples that belong to the first.
struct RunRecipe: Codable, Equatable {
    /// Option name (without dashes) → value.
    var options: [String: String]
    /// XXH64 of the data's tokens, as 16 hexadecimal digits.
    var data: String

    static let fileName = "recipe.json"

    /// The recipe of `options` and the examples `addData` feeds to a `DataHasher`.
    init(options: [String: String], data addData: (inout DataHasher) -> Void) {
        self.options = options
        var hasher = DataHasher()
        addData(&hasher)
        data = String(format: "%016llx", hasher.digest())
    }

    /// The file's contents.
    func contents() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try encoder.encode(self)
    }

    /// Refuses to resume from `checkpoint` when its recipe differs from this one (one written before checkpoints
    /// kept recipes is not checked).
    func verifyResume(from checkpoint: URL) throws {
        let url = checkpoint.appendingPathComponent(Self.fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        let before: RunRecipe
        do { before = try JSONDecoder().decode(RunRecipe.self, from: Data(contentsOf: url)) } catch {
            throw KeelError("--resume: cannot read \(url.path) as a run recipe: \(error)")
        }
        var differences = Set(before.options.keys).union(options.keys).sorted().compactMap { name -> String? in
            let isConfigKey = name.contains(".")
            // A config key recorded only since a later Keel cannot be compared with a checkpoint written before.
            if isConfigKey, before.options[name] == nil { return nil }
            let was = before.options[name] ?? "(unset)", now = options[name] ?? "(unset)"
            return was == now ? nil : isConfigKey ? "\(name) = \(now) (the checkpoint's: \(was))" : "--\(name) \(now) (the checkpoint's: \(was))"
        }
        if before.data != data {
            differences.append("the data, whose tokens differ from those the checkpoint was trained on (a file changed, or its chat template rendered other text)")
        }
        guard differences.isEmpty else {
            throw KeelError("--resume: this run differs from the one that wrote \(checkpoint.path): \(differences.joined(separator: "; ")); "
                            + "give the options and data it ran with", rulesOutRestart: true)
        }
    }
}

/// XXH64 over examples fed in order, each list with its length first (so [1, 2] + [3] differs from [1] + [2, 3]).
struct DataHasher {
    private var hasher = XXH64()

    mutating func add(_ tokens: [Int32]) {
        add(count: tokens.count)
        tokens.withUnsafeBytes { hasher.update($0) }
    }

    mutating func add(_ flags: [Bool]) {
        add(count: flags.count)
        flags.map { UInt8($0 ? 1 : 0) }.withUnsafeBytes { hasher.update($0) }
    }

    mutating func add(_ text: String) {
        let bytes = Array(text.utf8)
        add(count: bytes.count)
        bytes.withUnsafeBytes { hasher.update($0) }
    }

    mutating func add(_ example: SupervisedExample) {
        add(example.tokens)
        add(example.trained)
    }

    mutating func add(_ pair: PreferencePair) {
        add(pair.chosen)
        add(pair.rejected)
        add(String(pair.margin))
    }

    mutating func add(_ task: TaskPrompt) {
        add(task.tokens)
        for (key, value) in task.fields.sorted(by: { $0.key < $1.key }) {
            add(key)
            add(value)
        }
    }

    private mutating func add(count: Int) {
        var value = UInt64(count)
        withUnsafeBytes(of: &value) { hasher.update($0) }
    }

    func digest() -> UInt64 { hasher.digest() }
}
