import KeelCore

/// The keys and values of every layer for the tokens a sequence has seen, so that each new token attends to them
/// without recomputing them: per layer, `capacity` rows of the kv heads' keys and of their values.
final class KVCache {
    let layers: Int
    let capacity: Int
    /// Floats in one row: kv heads × head width.
    let rowWidth: Int
    /// Tokens held.
    var count = 0
    private let keys: FloatBuffer
    private let values: FloatBuffer

    init(layers: Int, capacity: Int, rowWidth: Int) {
        self.layers = layers
        self.capacity = capacity
        self.rowWidth = rowWidth
        keys = FloatBuffer(count: layers * capacity * rowWidth)
        values = FloatBuffer(count: layers * capacity * rowWidth)
    }

    /// Layer `layer`'s keys, `capacity` rows.
    func keys(_ layer: Int) -> UnsafeMutablePointer<Float> { keys.pointer + layer * capacity * rowWidth }
    /// Layer `layer`'s values, `capacity` rows.
    func values(_ layer: Int) -> UnsafeMutablePointer<Float> { values.pointer + layer * capacity * rowWidth }

    /// Forgets every token (a full cache is refilled from the text it keeps: rotated keys depend on positions,
    /// so rows cannot simply be moved).
    func clear() { count = 0 }
}
