import Foundation
import KeelCore

/// The lines of a file, read through one buffer (`LineReader`): memory that grows with the longest line, not the file.
public enum TextLines {
    /// Calls `body` with each line of the file at `path`, without its '\n' (valid during the call only).
    public static func forEach(inFile path: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        let lines = LineReader(try FileInput(path: path))
        while let line = try lines.next() { try body(line) }
    }
}
