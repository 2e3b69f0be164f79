import Foundation
import KeelCore
import KeelTrain

/// What a run directory holds for a report: its resolved config, the machine it ran on, and `metrics.jsonl`'s
/// records by kind.
public struct RunHistory {
    /// The directory's name.
    public let name: String
    public let directory: URL
    /// `config.toml` as written.
    public let configText: String
    /// The config read back (nil when it no longer loads, e.g. its data has moved; the report goes on without
    /// what needs it).
    public let config: TrainConfig?
    /// `hardware.json` (runs since Keel recorded it).
    public let hardware: HostDescription?
    /// The training steps' records: every numeric field by name, `step` included.
    public let steps: [[String: Double]]
    /// Validation losses.
    public let validation: [(step: Double, loss: Double)]
    /// Checkpoint stalls: seconds the step waited for each checkpoint.
    public let checkpointStalls: [(step: Double, seconds: Double)]

    /// Reads `directory`; a missing or unreadable `metrics.jsonl`, or a line that is not a JSON object, is an
    /// error naming the file (and line) — except a last line cut short (no line break after it: a run stopped
    /// mid-write, or one still writing), which is left out, as a resumed run drops it.
    public init(directory: URL) throws {
        self.directory = directory
        name = directory.standardizedFileURL.lastPathComponent
        let metrics = directory.appendingPathComponent("metrics.jsonl")
        guard let text = try? String(contentsOf: metrics, encoding: .utf8) else {
            throw KeelError("report: \(metrics.path): no such file (is \(directory.path) a run directory?)")
        }
        var steps: [[String: Double]] = [], validation: [(Double, Double)] = [], stalls: [(Double, Double)] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where !line.isEmpty {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let step = (object["step"] as? NSNumber)?.doubleValue
            else {
                if index == lines.count - 1 { break }   // the unfinished last line
                throw KeelError("report: \(metrics.path):\(index + 1): not a metrics record (a JSON object with a step)")
            }
            if let loss = (object["val_loss"] as? NSNumber)?.doubleValue { validation.append((step, loss)) }
            if let seconds = (object["checkpoint_s"] as? NSNumber)?.doubleValue { stalls.append((step, seconds)) }
            guard object["loss"] != nil else { continue }
            var record: [String: Double] = [:]
            for (key, value) in object {
                if let number = value as? NSNumber { record[key] = number.doubleValue }   // metrics hold no booleans
            }
            steps.append(record)
        }
        self.steps = steps
        self.validation = validation
        checkpointStalls = stalls
        let configFile = directory.appendingPathComponent("config.toml")
        configText = (try? String(contentsOf: configFile, encoding: .utf8)) ?? ""
        config = try? TrainConfig.load(path: configFile.path, overrides: [], requiresData: false)
        hardware = (try? Data(contentsOf: directory.appendingPathComponent("hardware.json")))
            .flatMap { try? JSONDecoder().decode(HostDescription.self, from: $0) }
    }

    /// `key` of every training record that has it, against `x` (`step` or `tokens`).
    public func series(_ key: String, against x: String = "step") -> [(x: Double, y: Double)] {
        steps.compactMap { record in
            guard let px = record[x], let py = record[key], px.isFinite, py.isFinite else { return nil }
            return (px, py)
        }
    }

    /// Tokens of the run by each validated step, for plotting validation against tokens: step 0 at none, the others
    /// where a training record of their step counts them (a run that logs no tokens — DPO, reward models — has none).
    public var validationByTokens: [(x: Double, y: Double)] {
        let tokensAt = Dictionary(steps.compactMap { r in r["step"].flatMap { s in r["tokens"].map { (s, $0) } } },
                                  uniquingKeysWith: { $1 })
        guard !tokensAt.isEmpty else { return [] }
        return validation.compactMap { point in (point.step == 0 ? 0 : tokensAt[point.step]).map { ($0, point.loss) } }
    }

    /// Model FLOPs per training token (6 per parameter in matrix products, plus attention), from the config.
    public var flopsPerToken: Double? {
        guard let config else { return nil }
        let length = config.training.sequenceLength
        return Benchmark.modelFlops(config.model, parameters: Benchmark.multipliedParameters(config.model), tokens: 1,
                                    length: length)
    }

    /// Devices the run used: its processes, as recorded (or, for runs before hardware.json, as its config's
    /// layout needs: pp × tp × dp, when the config gives dp); nil when unknown.
    public var devices: Int? {
        if let hardware { return hardware.processes }
        guard let parallel = config?.parallel, parallel.data != nil else { return nil }
        return parallel.processes
    }
}
