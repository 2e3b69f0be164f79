/// Where a model's parameters are when it does not hold them all between passes (ZeRO-3, PyTorch's FSDP): the
/// model names the spans of its parameter buffer that each part is about to read, and the residency makes them
/// present, then may free them once the part has run.
///
/// Forward, each part (the embedding, every block, the head) acquires its spans; backward, the head's norm and
/// every block again (the embedding's backward reads no parameters). `upcoming` names the next part's spans, so
/// they can be fetched while this part computes.
public protocol ParameterResidency: AnyObject {
    /// Returns once `spans` of the parameter buffer hold the model's values.
    func acquire(_ spans: [Range<Int>], upcoming: [Range<Int>]?)
    /// The part that acquired `spans` no longer reads them.
    func release(_ spans: [Range<Int>])
}
