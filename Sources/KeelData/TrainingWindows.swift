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
    /// Whether the windows keep documents apart (`documentEnd`: `data.document_masking`).
    public var packsDocuments: Bool { documentEnd != nil }

    /// With `documentEnd`, a document starts after each end-of-text token (Megatron's `reset_attention_mask` and
    /// `reset_position_ids`): the end-of-text token still belongs to the document it ends, and its target (the
    /// next document's first token) stays, predicted from that document alone.
    public func copy(window index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     documents: UnsafeMutablePointer<Int32>?) {
        copy(window: index, inputs: inputs, targets: targets)
        guard let documentEnd, let documents else { return }
        var start: Int32 = 0
        for i in 0..<length {
            documents[i] = start
            if inputs[i] == documentEnd { start = Int32(i + 1) }
        }
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
