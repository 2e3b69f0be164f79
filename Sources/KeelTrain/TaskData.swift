import Foundation
import KeelCore
import KeelData

/// Tasks for online training (GRPO): JSONL files of prompts with the fields a reward checks
/// (`SupervisedFormatter.taskPrompt`), rendered with the chat template beside the tokenizer as chat data is
/// (`ChatData`), every 1/fraction-th held out. A line that is not a task, or lacks what `reward` (when given) checks,
/// stops with the file and line named.
public struct TaskData {
    public let train: [TaskPrompt]
    public let validation: [TaskPrompt]
    /// A line for the log.
    public let summary: String
    /// How the tasks were rendered: `rewardExample` renders a completion for a reward model the same way.
    public let formatter: SupervisedFormatter

    public init(paths: [String], tokenizer: any TextTokenizer, tokenizerPath: String, validationFraction: Double,
                reward: VerifiableReward?) throws {
        let formatter = try ChatData.formatter(tokenizer: tokenizer, tokenizerPath: tokenizerPath, paths: paths)
        self.formatter = formatter
        let tasks = try ChatData.records(paths, kind: "tasks") { line in
            let task = try formatter.taskPrompt(json: line)
            guard !task.tokens.isEmpty else { throw KeelError("the prompt is empty: there is nothing to continue") }
            try reward?.check(task.fields)
            return task
        }
        (train, validation) = ChatData.split(tasks, validationFraction: validationFraction)
        summary = "\(paths.count) task file\(paths.count == 1 ? "" : "s"), \(train.count) + \(validation.count) prompts"
            + ChatData.templateNote(tokenizerPath)
    }
}
