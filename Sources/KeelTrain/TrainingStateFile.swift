import Foundation
import KeelCheckpoint
import KeelCore

/// What a fine-tuning run beside `keel train` (dpo, reward train, grpo) keeps in each checkpoint to resume bit for bit:
/// named float buffers (AdamW's moments, a reward head's) in `optimizer.safetensors`.
public enum TrainingStateFile {
    /// The file's name in a checkpoint directory.
    public static let name = "optimizer.safetensors"

    /// `buffers` as the bytes of a safetensors file.
    public static func contents(_ buffers: [String: FloatBuffer]) throws -> Data {
        try Safetensors.contents(buffers.sorted { $0.key < $1.key }.map { TensorSlice(name: $0.key, shape: [$0.value.count], floats: $0.value.pointer) })
    }

    /// Fills `buffers` from the file in checkpoint `directory`; a missing file or tensor, or one of another size, is
    /// an error naming it.
    public static func restore(_ buffers: [String: FloatBuffer], from directory: URL) throws {
        let url = directory.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw KeelError("\(directory.path) has no \(name): it was not written by this command, and cannot be resumed")
        }
        let file = try SafetensorsFile(url: url)
        for (tensor, buffer) in buffers {
            try file.convertFloats(tensor, shape: [buffer.count], to: buffer.pointer)
        }
    }
}
