/// Windows a training loader draws its batches from: a corpus cut into windows (`TokenWindows`, pre-training), or
/// supervised examples packed into windows (`SupervisedWindows`, fine-tuning: targets not trained on are
/// ignored, and tokens carry their document's start).
public protocol TrainingWindows: Sendable {
    /// Number of windows.
    var count: Int { get }
    /// Inputs (and targets) per window.
    var length: Int { get }
    /// Whether windows pack documents: `copy` then writes each token's document start.
    var packsDocuments: Bool { get }
    /// Copies window `index` into inputs, targets and, when the windows pack documents, documents (`length` each).
    func copy(window index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
              documents: UnsafeMutablePointer<Int32>?)
}

extension TokenWindows: TrainingWindows {
    public var packsDocuments: Bool { false }

    public func copy(window index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     documents: UnsafeMutablePointer<Int32>?) {
        copy(window: index, inputs: inputs, targets: targets)
    }
}

extension SupervisedWindows: TrainingWindows {
    public var packsDocuments: Bool { true }

    public func copy(window index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     documents: UnsafeMutablePointer<Int32>?) {
        guard let documents else { preconditionFailure("packed windows need room for their documents") }
        fill(index, inputs: inputs, targets: targets, documents: documents)
    }
}
