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
        let formatter = try Self.formatter(tokenizer: tokenizer, tokenizerPath: tokenizerPath, paths: paths)
        let examples = try Self.records(paths, kind: "examples", formatter.example(json:))
        let (kept, held) = Self.split(examples, validationFraction: validationFraction)
        train = SupervisedWindows(examples: kept, length: length, padding: tokenizer.endOfText)
        validation = SupervisedWindows(examples: held, length: length, padding: tokenizer.endOfText)
        let cut = train.truncated + validation.truncated
        summary = "\(paths.count) chat file\(paths.count == 1 ? "" : "s"), \(kept.count) + \(held.count) examples in \(train.count) + \(validation.count) windows"
            + Self.templateNote(tokenizerPath)
            + (cut > 0 ? "; \(cut) example\(cut == 1 ? "" : "s") longer than training.seq_len + 1 cut" : "")
    }

    /// The formatter of chat data for `tokenizer`: the chat template and special tokens found beside its file
    /// (`tokenizerPath`; Keel's ChatML without a template). A template's strftime_now sees the newest of the data
    /// files' times (`paths`): the same examples however late a run starts or resumes.
    static func formatter(tokenizer: any TextTokenizer, tokenizerPath: String, paths: [String]) throws -> SupervisedFormatter {
        let settings = tokenizerPath == "byte" ? nil : TokenizerSettings(besides: tokenizerPath)
        var special: [String: String] = [:]
        special["bos_token"] = settings?.beginningOfText
        special["eos_token"] = settings?.endOfSequence
        let endOfSequence = settings?.endOfSequence.flatMap(tokenizer.specialToken) ?? tokenizer.endOfText
        let dated = paths.compactMap { try? FileManager.default.attributesOfItem(atPath: $0)[.modificationDate] as? Date }
        do {
            return try SupervisedFormatter(template: settings?.chatTemplate, tokenizer: tokenizer, specialTokens: special,
                                           endOfSequence: endOfSequence, textStart: settings?.beginningOfTextToken(in: tokenizer),
                                           now: dated.max() ?? Date(timeIntervalSince1970: 0))
        } catch {
            throw KeelError("\(tokenizerPath): the chat template beside the tokenizer cannot be read: \(error)")
        }
    }

    /// " (Keel's ChatML)" or " (the tokenizer's chat template)", for a summary.
    static func templateNote(_ tokenizerPath: String) -> String {
        (tokenizerPath == "byte" ? nil : TokenizerSettings(besides: tokenizerPath).chatTemplate) == nil
            ? " (Keel's ChatML)" : " (the tokenizer's chat template)"
    }

    /// Every non-blank line of the JSONL files `paths` read by `record`; a line it refuses stops with the file and
    /// line named, and files without any `kind` stop too.
    static func records<Record>(_ paths: [String], kind: String, _ record: (String) throws -> Record) throws -> [Record] {
        var records: [Record] = []
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
                    records.append(try record(line))
                } catch {
                    throw KeelError("\(path):\(number + 1): \(error)")
                }
            }
        }
        guard !records.isEmpty else { throw KeelError("no \(kind) in \(paths.joined(separator: ", "))") }
        return records
    }

    /// Every 1/fraction-th record held out, so that validation spreads over the files: (kept, held).
    static func split<Record>(_ records: [Record], validationFraction: Double) -> ([Record], [Record]) {
        var held: [Record] = [], kept: [Record] = []
        for (index, record) in records.enumerated() {
            let isHeld = Int(Double(index + 1) * validationFraction) > Int(Double(index) * validationFraction)
            if isHeld { held.append(record) } else { kept.append(record) }
        }
        return (kept, held)
    }
}
