import Foundation
import KeelCore

/// Language identification with py3langid's published model (langid.py's naive Bayes over byte n-grams,
/// retrained by py3langid: 97 languages), read from the `model.npz.xz` its PyPI wheel ships. The text's UTF-8
/// bytes drive a finite automaton whose states name the n-gram features seen; each feature's log(1 + count)
/// weighs its per-language log-probabilities. Scores are normalised as py3langid's `norm_probs=True`
/// (divided by the square root of the byte count, then a softmax), so the confidence is a probability.
public final class LanguageIdentifier: Sendable {
    /// Language codes, one per model column (a code may appear twice: script variants folded together).
    public let languages: [String]
    private let classCount: Int
    /// Feature × language log-probabilities, float16 bits.
    private let weights: [UInt16]
    private let priors: [Float]
    /// The automaton: `transitions[rowOf[state] * 256 + byte]`; `features[state]` is the feature a state
    /// completes, or -1.
    private let transitions: [UInt32]
    private let rowOf: [UInt32]
    private let features: [Int32]
    /// (first column, duplicate column) for codes that appear twice.
    private let aliases: [(Int, Int)]

    /// Loads py3langid's model (`model.npz.xz`, or the `.npz` inside it).
    public init(modelPath: String) throws {
        let archive: NumpyArchive
        do { archive = try NumpyArchive(path: modelPath) } catch let error as KeelError {
            throw KeelError("language model: \(error.message)")
        }
        func array(_ name: String) throws -> NumpyArchive.Array {
            guard let array = archive[name] else { throw KeelError("language model: \(modelPath) has no \"\(name)\" array; is it py3langid's model.npz.xz?") }
            return array
        }
        languages = try array("classes").strings()
        classCount = languages.count
        let ptc = try array("ptc")
        guard ptc.descr == "<f2", ptc.shape.count == 2, ptc.shape[1] == classCount else {
            throw KeelError("language model: ptc is \(ptc.descr) \(ptc.shape), not float16 features × \(classCount)")
        }
        weights = try ptc.values(as: UInt16.self)
        let pc = try array("pc")
        guard pc.descr == "<f4", pc.count == classCount else { throw KeelError("language model: pc is \(pc.descr) \(pc.shape)") }
        priors = try pc.values(as: UInt32.self).map(Float.init(bitPattern:))
        func unsigned(_ array: NumpyArchive.Array) throws -> [UInt32] {
            array.descr == "<u2" ? try array.values(as: UInt16.self).map(UInt32.init) : try array.values(as: UInt32.self)
        }
        let transitions = try unsigned(array("nextmove"))
        let rowOf = try unsigned(array("nextmove_row"))
        let features = try array("out_feat").values(as: Int32.self)
        let featureCount = ptc.shape[0]
        // Checked once here so that the walk over text can index without fear (plain loops: the tables are large,
        // and these run unoptimised in debug builds too).
        func largest(_ values: [UInt32]) -> UInt32 {
            values.withUnsafeBufferPointer { buffer in
                var largest: UInt32 = 0
                for value in buffer where value > largest { largest = value }
                return largest
            }
        }
        let largestFeature = features.withUnsafeBufferPointer { buffer in
            var largest: Int32 = -1
            for value in buffer where value > largest { largest = value }
            return largest
        }
        guard !rowOf.isEmpty, rowOf.count == features.count, transitions.count % 256 == 0,
              Int(largest(rowOf)) < transitions.count / 256, Int(largest(transitions)) < rowOf.count,
              Int(largestFeature) < featureCount else {
            throw KeelError("language model: \(modelPath): the automaton's tables do not fit together")
        }
        (self.transitions, self.rowOf, self.features) = (transitions, rowOf, features)
        var first: [String: Int] = [:], aliases: [(Int, Int)] = []
        for (index, code) in languages.enumerated() {
            if let earlier = first[code] { aliases.append((earlier, index)) } else { first[code] = index }
        }
        self.aliases = aliases
    }

    /// The most likely language of `text` and its probability. Text with no known n-gram gets a uniform
    /// distribution over the columns, as in py3langid (so a code with two columns comes first).
    public func identify(_ text: String) -> (language: String, probability: Double) {
        best(in: probabilities(text))
    }

    /// The language of the highest probability (the first column of equal ones).
    func best(in scores: [Float]) -> (language: String, probability: Double) {
        let best = scores.indices.max { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }!
        return (languages[best], Double(scores[best]))
    }

    /// The probability of `language` among `scores` (0 for a code the model does not have).
    func probability(of language: String, in scores: [Float]) -> Double {
        languages.firstIndex(of: language).map { Double(scores[$0]) } ?? 0
    }

    /// One probability per column of `languages` (a duplicate code's column folded into its first).
    func probabilities(_ text: String) -> [Float] {
        var text = text
        if Self.isUpper(text) { text = text.lowercased() }
        let bytes = Array(text.precomposedStringWithCanonicalMapping.utf8)
        var counts: [Int32: Int] = [:]
        var state = 0
        for byte in bytes {
            state = Int(transitions[Int(rowOf[state]) << 8 | Int(byte)])
            let feature = features[state]
            if feature >= 0 { counts[feature, default: 0] += 1 }
        }
        var scores = [Float](repeating: 0, count: classCount)
        if !counts.isEmpty {
            scores = priors
            for (feature, count) in counts {
                let weight = log1p(Float(count))
                let row = Int(feature) * classCount
                for column in 0..<classCount { scores[column] += weight * Float(Float16(bitPattern: weights[row + column])) }
            }
            let scale = 1 / Float(bytes.count).squareRoot()
            let largest = scores.max()! * scale
            for column in 0..<classCount { scores[column] = exp(scores[column] * scale - largest) }
            let total = scores.reduce(0, +)
            for column in 0..<classCount { scores[column] /= total }
        }
        else {
            scores = [Float](repeating: 1 / Float(classCount), count: classCount)
        }
        for (first, duplicate) in aliases {
            scores[first] += scores[duplicate]
            scores[duplicate] = 0
        }
        return scores
    }

    /// Python's `str.isupper()`: some cased character, and none lower- or title-case.
    static func isUpper(_ text: String) -> Bool {
        var cased = false
        for scalar in text.unicodeScalars {
            let properties = scalar.properties
            if properties.isLowercase || properties.generalCategory == .titlecaseLetter { return false }
            if properties.isUppercase { cased = true }
        }
        return cased
    }
}
