/// Supervised examples packed into training windows: whole examples side by side in windows of `length + 1` token
/// positions (best fit, longest first, as TRL's `bfd` packing), each window read as `length` inputs, their targets
/// (the next position's token where the loss counts it — trained, in the same example — `ignoredTarget`
/// elsewhere), and each position's document start (where its example begins in the window), so that attention
/// stays within an example. Positions no example fills hold `padding`, ignored. An example longer than a window is
/// cut to it (counted in `truncated`).
public struct SupervisedWindows: Sendable {
    /// Inputs per window.
    public let length: Int
    public let count: Int
    /// Examples cut to a window's `length + 1` tokens.
    public let truncated: Int
    /// Target positions the loss counts, over all windows.
    public let trainedTargets: Int
    /// Per window, `length + 1` tokens, whether each is trained on, and its example's start (positions are the
    /// window's).
    private let tokens: [Int32]
    private let trained: [Bool]
    private let starts: [Int32]

    /// The target of a position the loss does not count (KeelKernels' `CrossEntropy.ignored`).
    public static let ignoredTarget: Int32 = -100

    public init(examples: [SupervisedExample], length: Int, padding: Int32) {
        precondition(length >= 1)
        let capacity = length + 1
        self.length = length
        // Best fit decreasing: the longest examples first, each into the fullest window it fits (ties: the earlier).
        let order = examples.indices.sorted { (min(examples[$0].tokens.count, capacity), $1) > (min(examples[$1].tokens.count, capacity), $0) }
        var bins: [[Int]] = []          // example indices per window
        var free: [Int] = []            // free positions per window
        // Windows with room, by free positions, each list latest-created first (the earliest is taken, from the end).
        // Full windows are in no list: nothing fits them.
        var byFree = [[Int]](repeating: [], count: capacity + 1)
        var truncated = 0
        for index in order {
            let size = min(examples[index].tokens.count, capacity)
            if examples[index].tokens.count > capacity { truncated += 1 }
            guard size > 0 else { continue }
            let w: Int
            if let space = (size...capacity).first(where: { !byFree[$0].isEmpty }) {
                w = byFree[space].removeLast()
            } else {
                w = bins.count
                bins.append([])
                free.append(capacity)
            }
            bins[w].append(index)
            free[w] -= size
            if free[w] > 0 {
                let list = byFree[free[w]]
                // Binary search for the place that keeps the list in descending order.
                var low = 0, high = list.count
                while low < high {
                    let middle = (low + high) / 2
                    if list[middle] > w { low = middle + 1 } else { high = middle }
                }
                byFree[free[w]].insert(w, at: low)
            }
        }
        self.truncated = truncated
        count = bins.count
        var tokens = [Int32](repeating: padding, count: bins.count * capacity)
        var trained = [Bool](repeating: false, count: bins.count * capacity)
        var starts = [Int32](repeating: 0, count: bins.count * capacity)
        var counted = 0
        for (w, members) in bins.enumerated() {
            var position = 0
            // In the window, examples in their original order.
            for index in members.sorted() {
                let example = examples[index], size = min(example.tokens.count, capacity)
                for j in 0..<size {
                    tokens[w * capacity + position + j] = example.tokens[j]
                    trained[w * capacity + position + j] = example.trained[j]
                    starts[w * capacity + position + j] = Int32(position)
                    // The first token of an example is no target: nothing before it in the example predicts it.
                    if j > 0 && example.trained[j] && position + j <= length { counted += 1 }
                }
                position += size
            }
            // Padding: each position its own document.
            for p in position..<capacity { starts[w * capacity + p] = Int32(p) }
        }
        self.tokens = tokens
        self.trained = trained
        self.starts = starts
        trainedTargets = counted
    }

    /// Window `index` into `inputs`, `targets` and `documents` (`length` each).
    public func fill(_ index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     documents: UnsafeMutablePointer<Int32>) {
        precondition(index >= 0 && index < count)
        let base = index * (length + 1)
        for j in 0..<length {
            inputs[j] = tokens[base + j]
            documents[j] = starts[base + j]
            let sameExample = starts[base + j + 1] == starts[base + j]
            targets[j] = sameExample && trained[base + j + 1] ? tokens[base + j + 1] : Self.ignoredTarget
        }
    }
}
