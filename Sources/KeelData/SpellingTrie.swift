/// Special tokens' spellings as a trie of their UTF-8 bytes: the longest spelling that starts at a place in a text is
/// found in as many steps as it has bytes, however many tokens there are (Llama 3 has 256, all starting "<|"), so a
/// text full of spellings costs no more to read than any other.
struct SpellingTrie {
    /// Each node's children by byte, and the token spelled by the path to it.
    private var children: [[UInt8: Int]] = [[:]]
    private var tokens: [Int32?] = [nil]

    init(_ spellings: [(String, Int32)]) {
        for (spelling, id) in spellings where !spelling.isEmpty {
            var node = 0
            for byte in spelling.utf8 {
                if let next = children[node][byte] {
                    node = next
                } else {
                    children.append([:])
                    tokens.append(nil)
                    children[node][byte] = children.count - 1
                    node = children.count - 1
                }
            }
            tokens[node] = id
        }
    }

    /// The byte length and token of the longest spelling at `bytes[position...]`, if one starts there.
    func longestMatch(in bytes: UnsafeBufferPointer<UInt8>, at position: Int) -> (length: Int, id: Int32)? {
        var node = 0, match: (length: Int, id: Int32)?
        var index = position
        while index < bytes.count, let next = children[node][bytes[index]] {
            node = next
            index += 1
            if let id = tokens[node] { match = (index - position, id) }
        }
        return match
    }
}
