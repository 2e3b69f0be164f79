/// Whether a value `JSONSerialization` parsed was `true` or `false`. Foundation on Linux bridges the numbers 0 and 1
/// to `Bool` as well, so `is Bool` cannot tell `1` from `true`: the value's own type says which it was.
public func isJSONBoolean(_ value: Any) -> Bool {
    type(of: value) == Bool.self || String(describing: type(of: value)).contains("Boolean")
}
