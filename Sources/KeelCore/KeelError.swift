/// An error a user can act on: one line that names the file, the key or the step that is wrong.
///
/// Every layer of Keel reports bad input with this type so that the command line can print the message
/// and exit non-zero without a stack trace.
public struct KeelError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The complete one-line message.
    public let message: String
    /// Whether a supervisor must not restart the job for this error: resuming from the newest checkpoint would meet
    /// it again (training diverged: resuming is bit for bit), or would continue a run that is not the job's (its
    /// `--out` held another run before it started).
    public let rulesOutRestart: Bool

    /// Creates an error with a complete one-line message.
    public init(_ message: String, rulesOutRestart: Bool = false) {
        self.message = message
        self.rulesOutRestart = rulesOutRestart
    }

    public var description: String { message }
}
