import Foundation
import KeelCore
import KeelData

/// Supervised fine-tuning data: JSONL files of conversations or prompt–completion pairs (`SupervisedFormatter`),
/// rendered with the chat template found beside the tokenizer (a Hugging Face `tokenizer_config.json` or
/// `chat_template.jinja`, as an import keeps them; Keel's ChatML when there is none), split into training and
/// validation examples (every 1/fraction-th example, spread over the files), and packed into windows
/// (`SupervisedWindows`). A line that is not an example stops with the file and line named.
struct ChatData {
    let train: SupervisedWindows
    let validation: SupervisedWindows
    let summary: String

    init(paths: [String], tokenizer: any TextTokenizer, tokenizerPath: String, length: Int, validationFraction: Double) throws {
        let settings = tokenizerPath == "byte" ? nil : TokenizerSettings(besides: tokenizerPath)
        var special: [String: String] = [:]
        special["bos_token"] = settings?.beginningOfText
        special["eos_token"] = settings?.endOfSequence
        let endOfSequence = settings?.endOfSequence.flatMap(tokenizer.specialToken) ?? tokenizer.endOfText
        // A template's strftime_now sees the newest data file's time: the same examples however late a run resumes.
        let dated = paths.compactMap { try? FileManager.default.attributesOfItem(atPath: $0)[.modificationDate] as? Date }
        let formatter: SupervisedFormatter
        do {
            formatter = try SupervisedFormatter(template: settings?.chatTemplate, tokenizer: tokenizer, specialTokens: special,
                                                endOfSequence: endOfSequence, now: dated.max() ?? Date(timeIntervalSince1970: 0))
        } catch {
            throw KeelError("\(tokenizerPath): the chat template beside the tokenizer cannot be read: \(error)")
        }
        var examples: [SupervisedExample] = []
        for path in paths {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw KeelError("\(path): cannot read (\(AtomicFile.systemReason(error)))")
            }
            // Lines split on "\n" in the bytes ("\r\n" is one Swift character, so a String split would miss it).
            for (number, bytes) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
                let line = String(decoding: bytes.last == 0x0D ? bytes.dropLast() : bytes, as: UTF8.self)
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                do {
                    examples.append(try formatter.example(json: line))
                } catch {
                    throw KeelError("\(path):\(number + 1): \(error)")
                }
            }
        }
        guard !examples.isEmpty else { throw KeelError("data.chat: no examples in \(paths.joined(separator: ", "))") }
        // Every 1/fraction-th example is held out, so that validation spreads over the files.
        var held: [SupervisedExample] = [], kept: [SupervisedExample] = []
        for (index, example) in examples.enumerated() {
            let isHeld = Int(Double(index + 1) * validationFraction) > Int(Double(index) * validationFraction)
            if isHeld { held.append(example) } else { kept.append(example) }
        }
        train = SupervisedWindows(examples: kept, length: length, padding: tokenizer.endOfText)
        validation = SupervisedWindows(examples: held, length: length, padding: tokenizer.endOfText)
        let cut = train.truncated + validation.truncated
        summary = "\(paths.count) chat file\(paths.count == 1 ? "" : "s"), \(kept.count) + \(held.count) examples in \(train.count) + \(validation.count) windows"
            + (settings?.chatTemplate == nil ? " (Keel's ChatML)" : " (the tokenizer's chat template)")
            + (cut > 0 ? "; \(cut) example\(cut == 1 ? "" : "s") longer than training.seq_len + 1 cut" : "")
    }
}
