/// An error a user can act on: one line that names the file, the key or the step that is wrong.
///
/// Every layer of Keel reports bad input with this type so that the command line can print the message
/// and exit non-zero without a stack trace.
public struct KeelError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The complete one-line message.
    public let message: String
    /// Whether resuming from the newest checkpoint would meet this error again (training diverged: resuming is bit
    /// for bit), so that a supervisor does not restart the job for it.
    public let recursOnResume: Bool

    /// Creates an error with a complete one-line message.
    public init(_ message: String, recursOnResume: Bool = false) {
        self.message = message
        self.recursOnResume = recursOnResume
    }

    public var description: String { message }
}
