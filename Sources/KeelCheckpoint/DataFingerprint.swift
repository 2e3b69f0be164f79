import Foundation

/// What a run's data was when a checkpoint was written: enough to tell, at `--resume`, that the data or the settings
/// that cut it into windows changed.
///
/// A checkpoint's data position (`TrainingState.samplesConsumed`) is a place in an order of windows drawn from the
/// seed and the number of windows. On other data that position lies in another order: the rest of the run would
/// repeat some windows and skip others (and a file added to a directory moves the validation split into training),
/// while the log promises the losses an uninterrupted run would compute.
public struct DataFingerprint: Codable, Equatable, Sendable {
    /// Windows in the training and validation splits.
    public var trainWindows: Int, validationWindows: Int
    /// Tokens each window feeds the model (`training.seq_len`).
    public var windowLength: Int
    /// Whether windows keep documents apart (`data.document_masking`).
    public var documentMasking: Bool
    /// XXH64 of the tokenizer file (hexadecimal), or "byte".
    public var tokenizer: String
    /// XXH64 (hexadecimal) of the tokens of windows spread evenly over each split (`sampledWindows` each, the first
    /// and last among them): a change that keeps the counts but moves tokens shows in it.
    public var windows: String

    /// How many windows of each split `windows` hashes, at most.
    public static let sampledWindows = 257

    public init(trainWindows: Int, validationWindows: Int, windowLength: Int, documentMasking: Bool, tokenizer: String,
                windows: String) {
        self.trainWindows = trainWindows
        self.validationWindows = validationWindows
        self.windowLength = windowLength
        self.documentMasking = documentMasking
        self.tokenizer = tokenizer
        self.windows = windows
    }

    enum CodingKeys: String, CodingKey {
        case tokenizer, windows
        case trainWindows = "train_windows", validationWindows = "validation_windows", windowLength = "window_length"
        case documentMasking = "document_masking"
    }

    /// What differs from `saved` (the checkpoint's), as "training windows 1200 there, 1350 here"; empty when nothing.
    public func differences(from saved: DataFingerprint) -> [String] {
        var found: [String] = []
        func compare<T: Equatable>(_ name: String, _ there: T, _ here: T) {
            if there != here { found.append("\(name) \(there) there, \(here) here") }
        }
        compare("training windows", saved.trainWindows, trainWindows)
        compare("validation windows", saved.validationWindows, validationWindows)
        compare("window length (training.seq_len)", saved.windowLength, windowLength)
        compare("document masking", saved.documentMasking ? "on" : "off", documentMasking ? "on" : "off")
        if saved.tokenizer != tokenizer { found.append("another tokenizer") }
        if found.isEmpty, saved.windows != windows { found.append("the same counts of windows, holding other tokens") }
        return found
    }
}
