import KeelCore

/// What a parallel strategy needs of a model (or, later, of a pipeline stage): its flat parameter and
/// gradient buffers, and a hook through which its training pass reports each span of the gradients the
/// moment it is final, so communication can start while the backward pass goes on.
public protocol GradientSource: AnyObject {
    /// Every parameter, end to end.
    var parameters: FloatBuffer { get }
    /// The gradient of every parameter, laid out as `parameters`.
    var gradients: FloatBuffer { get }
    /// Called with each span of `gradients` once a training pass has finished writing it; nil: no calls.
    var gradientsReady: ((Range<Int>) -> Void)? { get set }
}

extension Transformer: GradientSource {}
