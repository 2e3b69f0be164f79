import ArgumentParser
import Foundation

/// Checks on the files a data command writes, before it reads anything: each is plain text (Keel writes no compressed
/// output, and a `.gz` name on plain JSONL would be read back as gzip and refused, by Keel and by `zcat`), and none
/// is one of the command's inputs (written first, it would replace what is then read).
enum OutputFiles {
    /// Throws naming the first of `outputs` (option name, path) that ends in a compressed suffix or names one of
    /// `inputs`.
    static func check(_ outputs: [(option: String, path: String?)], inputs: [String]) throws {
        let compressed = [".gz", ".zst", ".zstd", ".xz", ".bz2"]
        func resolved(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path }
        let read = Set(inputs.map(resolved))
        for case let (option, path?) in outputs {
            if let suffix = compressed.first(where: { path.lowercased().hasSuffix($0) }) {
                throw ValidationError("\(option) \(path): Keel writes plain text; name it without \(suffix) and compress it afterwards")
            }
            if read.contains(resolved(path)) {
                throw ValidationError("\(option) \(path) is one of the inputs: writing it would replace what is to be read")
            }
        }
    }
}
