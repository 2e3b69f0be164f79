import Foundation

/// What is wrong with a JSON file that `JSONDecoder` refused, in words for an error message: the field that
/// is missing or has the wrong type (with its path, e.g. `train.shards[0].tokens`), or that it is not JSON.
public func decodingProblem(_ error: Error) -> String {
    func path(_ codingPath: [CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text
    }
    switch error as? DecodingError {
    case .keyNotFound(let key, let context)?:
        return "no \"\(path(context.codingPath + [key]))\" field"
    case .typeMismatch(let type, let context)?, .valueNotFound(let type, let context)?:
        return "\"\(path(context.codingPath))\" is not \(type == String.self ? "a string" : "a \(type)")"
    case .dataCorrupted(let context)?:
        return context.codingPath.isEmpty ? "not valid JSON" : "\"\(path(context.codingPath))\" is invalid"
    default:
        return "\(error)"
    }
}
