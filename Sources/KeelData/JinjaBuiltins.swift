import Foundation

/// What Jinja templates call on values: operators, attributes and subscripts, filters, tests, Python's string and
/// dictionary methods, and the global functions — with Python's semantics and, where a template can fail, Jinja's
/// error messages.
enum JinjaBuiltins {
    /// Global functions: `range`, `namespace`, `dict`, `raise_exception` (Hugging Face's: the template's own error).
    static let functions: [String: JinjaValue] = [
        "range": .function(JinjaFunction("range") { arguments, _ in
            let bounds = try arguments.map { value -> Int in
                guard case .int(let number) = value else { throw JinjaError("range() takes integers, not \(value.typeName)") }
                return number
            }
            let (start, stop, step) = switch bounds.count {
            case 1: (0, bounds[0], 1)
            case 2: (bounds[0], bounds[1], 1)
            case 3: (bounds[0], bounds[1], bounds[2])
            default: throw JinjaError("range() takes one to three arguments")
            }
            guard step != 0 else { throw JinjaError("range() arg 3 must not be zero") }
            return .list(Array(stride(from: start, to: stop, by: step)).map(JinjaValue.int))
        }),
        "namespace": .function(JinjaFunction("namespace") { arguments, keywords in
            var attributes = JinjaDictionary()
            for argument in arguments {
                guard case .dictionary(let dictionary) = argument else { throw JinjaError("namespace() takes a dictionary or keywords") }
                for entry in dictionary.entries { attributes[entry.key] = entry.value }
            }
            for entry in keywords.entries { attributes[entry.key] = entry.value }
            return .namespace(JinjaNamespace(attributes))
        }),
        "dict": .function(JinjaFunction("dict") { _, keywords in .dictionary(keywords) }),
        "raise_exception": .function(JinjaFunction("raise_exception") { arguments, _ in
            throw JinjaError(arguments.first?.text ?? "raise_exception")
        }),
    ]

    // MARK: - Access

    /// Dictionary methods: `value.items` names the method, not a key "items" (Jinja's getattr comes first).
    private static let dictionaryMethods: Set<String> = ["items", "keys", "values", "get"]
    private static let stringMethods: Set<String> = ["strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith",
                                                     "upper", "lower", "title", "capitalize", "replace", "find", "count",
                                                     "splitlines", "join", "isdigit", "isspace"]

    static func attribute(_ value: JinjaValue, _ name: String) throws -> JinjaValue {
        switch value {
        case .undefined(let undefined):
            throw JinjaError("'\(undefined)' is undefined")
        case .dictionary(let dictionary):
            if dictionaryMethods.contains(name) { return method(name, of: value) }
            return dictionary[name] ?? .undefined(name)
        case .namespace(let space):
            return space.attributes[name] ?? .undefined(name)
        case .string where stringMethods.contains(name):
            return method(name, of: value)
        default:
            return .undefined(name)
        }
    }

    static func item(_ value: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (value, key) {
        case (.undefined(let undefined), _):
            throw JinjaError("'\(undefined)' is undefined")
        case (.dictionary(let dictionary), .string(let name)):
            return dictionary[name] ?? .undefined(name)
        case (.namespace(let space), .string(let name)):
            return space.attributes[name] ?? .undefined(name)
        case (.list(let items), .int(let index)):
            let position = index < 0 ? items.count + index : index
            return items.indices.contains(position) ? items[position] : .undefined("[\(index)]")
        case (.string(let text), .int(let index)):
            // Python indexes code points.
            let scalars = Array(text.unicodeScalars)
            let position = index < 0 ? scalars.count + index : index
            return scalars.indices.contains(position) ? .string(String(scalars[position])) : .undefined("[\(index)]")
        default:
            return .undefined(key.text)
        }
    }

    /// `value[start:stop:step]` on a list or string, with Python's clamping and negative indices.
    static func slice(_ value: JinjaValue, start: JinjaValue?, stop: JinjaValue?, step: JinjaValue?) throws -> JinjaValue {
        func integer(_ bound: JinjaValue?) throws -> Int? {
            guard let bound, bound != .none else { return nil }
            guard case .int(let number) = bound else { throw JinjaError("slice indices must be integers, not \(bound.typeName)") }
            return number
        }
        let step = try integer(step) ?? 1
        guard step != 0 else { throw JinjaError("slice step cannot be zero") }
        func pick<T>(_ items: [T]) throws -> [T] {
            let count = items.count
            func clamp(_ index: Int?, _ otherwise: Int) -> Int {
                guard var index else { return otherwise }
                if index < 0 { index += count }
                return step > 0 ? min(max(index, 0), count) : min(max(index, -1), count - 1)
            }
            let first = clamp(try integer(start), step > 0 ? 0 : count - 1)
            let end = clamp(try integer(stop), step > 0 ? count : -1)
            return Array(stride(from: first, to: end, by: step)).map { items[$0] }
        }
        switch value {
        case .list(let items): return .list(try pick(items))
        case .string(let text): return .string(scalarString(try pick(Array(text.unicodeScalars))))
        case .undefined(let name): throw JinjaError("'\(name)' is undefined")
        default: throw JinjaError("'\(value.typeName)' object is not subscriptable")
        }
    }

    /// The items a `for` goes over: a list's elements, a dictionary's keys, a string's characters; none for undefined.
    static func iterate(_ value: JinjaValue) throws -> [JinjaValue] {
        switch value {
        case .undefined: return []
        case .list(let items): return items
        case .dictionary(let dictionary): return dictionary.keys.map(JinjaValue.string)
        case .string(let text): return text.unicodeScalars.map { .string(String($0)) }
        default: throw JinjaError("'\(value.typeName)' object is not iterable")
        }
    }

    /// The parts of a value unpacked into several names (`for key, value in d.items()`).
    static func items(of value: JinjaValue) throws -> [JinjaValue] {
        guard case .list(let items) = value else { throw JinjaError("cannot unpack a \(value.typeName)") }
        return items
    }

    /// Jinja's attribute path (`"function.name"`): each part looked up as a key first, as its `getattr` filter
    /// arguments are; an undefined part gives undefined.
    static func path(_ value: JinjaValue, _ path: String) throws -> JinjaValue {
        var current = value
        for part in path.split(separator: ".") {
            guard current.isDefined else { return current }
            let key: JinjaValue = Int(part).map(JinjaValue.int) ?? .string(String(part))
            current = try item(current, key)
        }
        return current
    }

    // MARK: - Methods

    private static func method(_ name: String, of value: JinjaValue) -> JinjaValue {
        .function(JinjaFunction(name) { arguments, keywords in
            switch value {
            case .dictionary(let dictionary): return try dictionaryMethod(name, dictionary, arguments)
            case .string(let text): return try stringMethod(name, text, arguments, keywords)
            default: throw JinjaError("'\(value.typeName)' object has no attribute '\(name)'")
            }
        })
    }

    private static func dictionaryMethod(_ name: String, _ dictionary: JinjaDictionary, _ arguments: [JinjaValue]) throws -> JinjaValue {
        switch name {
        case "items": return .list(dictionary.entries.map { .list([.string($0.key), $0.value]) })
        case "keys": return .list(dictionary.keys.map(JinjaValue.string))
        case "values": return .list(dictionary.entries.map(\.value))
        default: // get
            guard let key = arguments.first else { throw JinjaError("get expected at least 1 argument, got 0") }
            return dictionary[key.text] ?? (arguments.count > 1 ? arguments[1] : .none)
        }
    }

    /// The code points `strip` and its kin take away: the given ones, or Python's whitespace.
    private static func stripSet(_ arguments: [JinjaValue]) -> (Unicode.Scalar) -> Bool {
        if let first = arguments.first, case .string(let characters) = first {
            let set = Set(characters.unicodeScalars)
            return { set.contains($0) }
        }
        return { $0.properties.isWhitespace }
    }

    /// A string of code points.
    private static func scalarString<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        return text
    }

    private static func stringMethod(_ name: String, _ text: String, _ arguments: [JinjaValue], _ keywords: JinjaDictionary) throws -> JinjaValue {
        switch name {
        // Python works on code points ("\r\n" is two), not on Swift's characters.
        case "strip":
            let strip = stripSet(arguments), scalars = Array(text.unicodeScalars)
            return .string(scalarString(scalars.drop(while: strip).reversed().drop(while: strip).reversed()))
        case "lstrip": return .string(scalarString(text.unicodeScalars.drop(while: stripSet(arguments))))
        case "rstrip": return .string(scalarString(Array(text.unicodeScalars).reversed().drop(while: stripSet(arguments)).reversed()))
        case "upper": return .string(text.uppercased())
        case "lower": return .string(text.lowercased())
        case "title": return .string(titled(text))
        case "capitalize": return .string(text.prefix(1).uppercased() + text.dropFirst().lowercased())
        case "isdigit": return .bool(!text.isEmpty && text.allSatisfy(\.isNumber))
        case "isspace": return .bool(!text.isEmpty && text.allSatisfy(\.isWhitespace))
        case "startswith", "endswith":
            let candidates: [JinjaValue]
            if case .list(let items)? = arguments.first { candidates = items } else { candidates = Array(arguments.prefix(1)) }
            let scalars = Array(text.unicodeScalars)
            return .bool(candidates.contains { candidate in
                let affix = Array(candidate.text.unicodeScalars)
                return name == "startswith" ? scalars.starts(with: affix) : scalars.reversed().starts(with: affix.reversed())
            })
        case "replace":
            guard arguments.count >= 2 else { throw JinjaError("replace expected 2 arguments") }
            return .string(text.replacingOccurrences(of: arguments[0].text, with: arguments[1].text))
        case "find":
            guard let needle = arguments.first?.text else { throw JinjaError("find expected 1 argument") }
            guard let range = text.range(of: needle) else { return .int(-1) }
            return .int(text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: range.lowerBound))
        case "count":
            guard let needle = arguments.first?.text, !needle.isEmpty else { return .int(text.count + 1) }
            return .int(text.components(separatedBy: needle).count - 1)
        case "splitlines": return .list(text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map { .string(String($0)) }
                                            .dropLast(text.last?.isNewline == true ? 1 : 0))
        case "join":
            return .string(try iterate(arguments.first ?? .list([])).map(\.text).joined(separator: text))
        default: // split, rsplit
            let separator = arguments.first ?? keywords["sep"] ?? .none
            var limit = -1
            if arguments.count > 1, case .int(let number) = arguments[1] { limit = number }
            if case .int(let number)? = keywords["maxsplit"] { limit = number }
            return .list(split(text, separator: separator == .none ? nil : separator.text, limit: limit,
                               fromRight: name == "rsplit").map(JinjaValue.string))
        }
    }

    /// Python's `int(x)` of a float: nil for NaN (the `int` filter then gives its default, as Jinja2 does), an error for
    /// a value no 64-bit integer holds (Python's integers would; infinity is an error in Python too).
    private static func truncated(_ number: Double) throws -> JinjaValue? {
        guard !number.isNaN else { return nil }
        guard let integer = Int(exactly: number.rounded(.towardZero)) else {
            throw JinjaError("cannot convert \(number) to a 64-bit integer")
        }
        return .int(integer)
    }

    /// Python's `str.split` (and `rsplit`): on runs of whitespace without a separator, else on each separator.
    private static func split(_ text: String, separator: String?, limit: Int, fromRight: Bool) -> [String] {
        guard let separator else {
            var parts = text.split(whereSeparator: \.isWhitespace).map(String.init)
            if limit >= 0, parts.count > limit {
                // Python keeps the rest of the text, from the first piece past the limit, as the last part.
                if fromRight {
                    // The mirror of the split from the left: the words from the end, the rest keeping its leading
                    // white space.
                    var rest = Substring(text)
                    var tail: [String] = []
                    for _ in 0..<limit {
                        while let last = rest.last, last.isWhitespace { rest.removeLast() }
                        let start = rest.lastIndex(where: \.isWhitespace).map(rest.index(after:)) ?? rest.startIndex
                        tail.insert(String(rest[start...]), at: 0)
                        rest = rest[..<start]
                    }
                    while let last = rest.last, last.isWhitespace { rest.removeLast() }
                    parts = [String(rest)] + tail
                } else {
                    var rest = Substring(text)
                    var head: [String] = []
                    for _ in 0..<limit {
                        rest = rest.drop(while: \.isWhitespace)
                        let word = rest.prefix(while: { !$0.isWhitespace })
                        head.append(String(word))
                        rest = rest.dropFirst(word.count)
                    }
                    parts = head + [String(rest.drop(while: \.isWhitespace))]
                }
            }
            return parts
        }
        var parts = text.components(separatedBy: separator)
        if limit >= 0, parts.count > limit + 1 {
            if fromRight {
                parts = [parts[..<(parts.count - limit)].joined(separator: separator)] + parts.suffix(limit)
            } else {
                parts = Array(parts.prefix(limit)) + [parts[limit...].joined(separator: separator)]
            }
        }
        return parts
    }

    /// Python's `format % arguments` for the conversions templates use: %s, %r, %d and %i, %f with an optional
    /// precision (%.2f), and %%.
    private static func percentFormat(_ format: String, _ arguments: [JinjaValue]) throws -> String {
        var out = "", remaining = arguments[...]
        var characters = Array(format)[...]
        func next() throws -> JinjaValue {
            guard let argument = remaining.popFirst() else { throw JinjaError("not enough arguments for format string") }
            return argument
        }
        while let character = characters.popFirst() {
            guard character == "%" else { out.append(character); continue }
            var precision: Int?
            if characters.first == ".", let digits = Int(String(characters.dropFirst().prefix(while: \.isNumber))) {
                precision = digits
                characters = characters.dropFirst(1 + String(digits).count)
            }
            switch characters.popFirst() {
            case "%": out += "%"
            case "s": out += try next().text
            case "r": out += try next().repr
            case "d", "i":
                let value = try next()
                guard let number = value.number else { throw JinjaError("%d format: a number is required, not \(value.typeName)") }
                out += String(Int(number.rounded(.towardZero)))
            case "f":
                let value = try next()
                guard let number = value.number else { throw JinjaError("%f format: a number is required, not \(value.typeName)") }
                out += String(format: "%.\(precision ?? 6)f", number)
            case let other:
                throw JinjaError("unsupported format character '\(other.map(String.init) ?? "")'")
            }
        }
        guard remaining.isEmpty else { throw JinjaError("not all arguments converted during string formatting") }
        return out
    }

    /// Python's `str.title`: a letter after a non-letter is upper-cased, the others lower-cased.
    private static func titled(_ text: String) -> String {
        var out = ""
        var previousIsLetter = false
        for character in text {
            out += previousIsLetter ? character.lowercased() : character.uppercased()
            previousIsLetter = character.isLetter
        }
        return out
    }

    // MARK: - Operators

    static func binary(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(left == right)
        case "!=": return .bool(left != right)
        case "<", "<=", ">", ">=": return .bool(try compare(op, left, right))
        case "in", "not in": return .bool(try contains(right, left) == (op == "in"))
        case "~": return .string(left.text + right.text)
        case "+":
            switch (left, right) {
            case (.string(let a), .string(let b)): return .string(a + b)
            case (.list(let a), .list(let b)): return .list(a + b)
            default: return try arithmetic(op, left, right)
            }
        case "*":
            switch (left, right) {
            case (.string(let text), .int(let count)), (.int(let count), .string(let text)):
                return .string(String(repeating: text, count: max(count, 0)))
            case (.list(let items), .int(let count)):
                return .list(Array(repeating: items, count: max(count, 0)).flatMap { $0 })
            default: return try arithmetic(op, left, right)
            }
        default: return try arithmetic(op, left, right)
        }
    }

    private static func arithmetic(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> JinjaValue {
        if case .undefined(let name) = left { throw JinjaError("'\(name)' is undefined") }
        if case .undefined(let name) = right { throw JinjaError("'\(name)' is undefined") }
        guard let a = left.number, let b = right.number else {
            throw JinjaError("unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")
        }
        let integers: (Int, Int)? = if case .int(let x) = left, case .int(let y) = right { (x, y) } else { nil }
        /// An integer result, or an error where Python's integers (of any size) would go past 64 bits.
        func checked(_ result: (partialValue: Int, overflow: Bool)) throws -> Int {
            guard !result.overflow else { throw JinjaError("integer overflow in \(op): the result does not fit 64 bits") }
            return result.partialValue
        }
        switch op {
        case "+": return try integers.map { .int(try checked($0.addingReportingOverflow($1))) } ?? .double(a + b)
        case "-": return try integers.map { .int(try checked($0.subtractingReportingOverflow($1))) } ?? .double(a - b)
        case "*": return try integers.map { .int(try checked($0.multipliedReportingOverflow(by: $1))) } ?? .double(a * b)
        case "/":
            guard b != 0 else { throw JinjaError("division by zero") }
            return .double(a / b)
        case "//", "%":
            guard b != 0 else { throw JinjaError("integer division or modulo by zero") }
            if let (x, y) = integers {
                // In integers (a Double loses digits past 2⁵³); Python floors: the remainder takes the divisor's sign.
                guard x != .min || y != -1 else { throw JinjaError("integer overflow in \(op): the result does not fit 64 bits") }
                var (quotient, remainder) = x.quotientAndRemainder(dividingBy: y)
                if remainder != 0, (remainder < 0) != (y < 0) {
                    quotient -= 1
                    remainder += y
                }
                return .int(op == "//" ? quotient : remainder)
            }
            let quotient = (a / b).rounded(.down)
            return op == "//" ? .double(quotient) : .double(a - quotient * b)
        case "**":
            if let (x, y) = integers, y >= 0 {
                // By squaring, in integers.
                var power = 1, base = x, exponent = y
                while exponent > 0 {
                    if exponent & 1 == 1 { power = try checked(power.multipliedReportingOverflow(by: base)) }
                    exponent >>= 1
                    if exponent > 0 { base = try checked(base.multipliedReportingOverflow(by: base)) }
                }
                return .int(power)
            }
            return .double(pow(a, b))
        default: throw JinjaError("unknown operator \(op)")
        }
    }

    private static func compare(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> Bool {
        let order: ComparisonResult
        if let a = left.number, let b = right.number {
            order = a < b ? .orderedAscending : a > b ? .orderedDescending : .orderedSame
        } else if case .string(let a) = left, case .string(let b) = right {
            // Python compares code points.
            let x = Array(a.unicodeScalars.map(\.value)), y = Array(b.unicodeScalars.map(\.value))
            order = x.lexicographicallyPrecedes(y) ? .orderedAscending : x == y ? .orderedSame : .orderedDescending
        } else {
            throw JinjaError("'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'")
        }
        switch op {
        case "<": return order == .orderedAscending
        case "<=": return order != .orderedDescending
        case ">": return order == .orderedDescending
        default: return order != .orderedAscending
        }
    }

    private static func contains(_ container: JinjaValue, _ item: JinjaValue) throws -> Bool {
        switch container {
        case .string(let text):
            guard case .string(let needle) = item else { throw JinjaError("'in <string>' requires string as left operand, not \(item.typeName)") }
            return needle.isEmpty || text.contains(needle)
        case .list(let items): return items.contains(item)
        case .dictionary(let dictionary): return dictionary[item.text] != nil && { if case .string = item { true } else { false } }()
        case .undefined: return false // an undefined value iterates as nothing
        default: throw JinjaError("argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: - Tests

    static func test(_ name: String, _ value: JinjaValue, _ arguments: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": return value.isDefined
        case "undefined": return !value.isDefined
        case "none": return value == .none && value.isDefined
        case "string": if case .string = value { return true } else { return false }
        case "number": if case .int = value { return true } else if case .double = value { return true } else { return false }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": return value == .bool(true) && { if case .bool = value { true } else { false } }()
        case "false": return value == .bool(false) && { if case .bool = value { true } else { false } }()
        case "mapping": if case .dictionary = value { return true } else { return false }
        case "sequence":
            switch value { case .list, .string, .dictionary: return true; default: return false }
        case "iterable":
            switch value { case .list, .string, .dictionary: return true; default: return false }
        case "callable": if case .function = value { return true } else { return false }
        case "equalto", "eq", "==", "sameas": return value == (arguments.first ?? .none)
        case "ne", "!=": return value != (arguments.first ?? .none)
        case "in": return try contains(arguments.first ?? .list([]), value)
        case "lower": return value.text == value.text.lowercased()
        case "upper": return value.text == value.text.uppercased()
        case "even", "odd":
            guard case .int(let number) = value else { throw JinjaError("'\(name)' needs an integer") }
            return (number % 2 == 0) == (name == "even")
        case "divisibleby":
            guard case .int(let number) = value, case .int(let divisor)? = arguments.first, divisor != 0 else {
                throw JinjaError("'divisibleby' needs integers")
            }
            return number % divisor == 0
        default: throw JinjaError("no test named '\(name)'")
        }
    }

    // MARK: - Filters

    static func filter(_ name: String, _ value: JinjaValue, _ arguments: (positional: [JinjaValue], keywords: JinjaDictionary)) throws -> JinjaValue {
        let (positional, keywords) = arguments
        func argument(_ index: Int, _ keyword: String) -> JinjaValue? {
            index < positional.count ? positional[index] : keywords[keyword]
        }
        switch name {
        case "trim":
            return try stringMethod("strip", value.text, Array(positional.prefix(1)), JinjaDictionary())
        case "upper": return .string(value.text.uppercased())
        case "lower": return .string(value.text.lowercased())
        case "title": return .string(titled(value.text))
        case "capitalize": return try stringMethod("capitalize", value.text, [], JinjaDictionary())
        case "string": return .string(value.text)
        case "safe": return value
        case "length", "count":
            switch value {
            case .list(let items): return .int(items.count)
            case .string(let text): return .int(text.unicodeScalars.count)
            case .dictionary(let dictionary): return .int(dictionary.entries.count)
            case .undefined: return .int(0)
            default: throw JinjaError("object of type '\(value.typeName)' has no len()")
            }
        case "default", "d":
            let fallback = argument(0, "default_value") ?? .string("")
            let boolean = argument(1, "boolean")?.isTrue ?? false
            return (boolean ? value.isTrue : value.isDefined) ? value : fallback
        case "join":
            let separator = argument(0, "d")?.text ?? ""
            var items = try iterate(value)
            if let attribute = argument(1, "attribute") { items = try items.map { try item($0, attribute) } }
            return .string(items.map(\.text).joined(separator: separator))
        case "first":
            return try iterate(value).first ?? .undefined("first")
        case "last":
            return try iterate(value).last ?? .undefined("last")
        case "list": return .list(try iterate(value))
        case "reverse":
            if case .string(let text) = value { return .string(scalarString(text.unicodeScalars.reversed())) }
            return .list(try iterate(value).reversed())
        case "unique":
            var seen: [JinjaValue] = []
            for item in try iterate(value) where !seen.contains(item) { seen.append(item) }
            return .list(seen)
        case "items":
            guard case .dictionary(let dictionary) = value else {
                if !value.isDefined { return .list([]) }
                throw JinjaError("items filter needs a mapping, not \(value.typeName)")
            }
            return .list(dictionary.entries.map { .list([.string($0.key), $0.value]) })
        case "tojson":
            var indent: Int?
            if case .int(let number)? = argument(0, "indent") { indent = number }
            var separators = indent == nil ? (item: ", ", key: ": ") : (item: ",", key: ": ")
            if case .list(let pair)? = keywords["separators"], pair.count == 2 { separators = (pair[0].text, pair[1].text) }
            return .string(try value.json(indent: indent, separators: separators, sortKeys: keywords["sort_keys"]?.isTrue ?? false))
        case "int":
            switch value {
            case .int: return value
            case .double(let number): return try truncated(number) ?? argument(0, "default") ?? .int(0)
            case .bool(let flag): return .int(flag ? 1 : 0)
            case .string(let text):
                if let number = Int(text.trimmingCharacters(in: .whitespaces)) { return .int(number) }
                return try Double(text).flatMap(truncated) ?? argument(0, "default") ?? .int(0)
            default: return argument(0, "default") ?? .int(0)
            }
        case "float":
            return .double(value.number ?? Double(value.text.trimmingCharacters(in: .whitespaces)) ?? 0)
        case "abs":
            switch value {
            case .int(let number): return .int(abs(number))
            case .double(let number): return .double(abs(number))
            default: throw JinjaError("bad operand type for abs(): '\(value.typeName)'")
            }
        case "replace":
            guard positional.count >= 2 else { throw JinjaError("replace filter takes two arguments") }
            return .string(value.text.replacingOccurrences(of: positional[0].text, with: positional[1].text))
        case "indent":
            let width = argument(0, "width")
            let prefix: String = if case .string(let text)? = width { text } else if case .int(let count)? = width {
                String(repeating: " ", count: count) } else { "    " }
            let first = argument(1, "first")?.isTrue ?? false, blank = argument(2, "blank")?.isTrue ?? false
            // Jinja2's do_indent: the lines after the first, each unless empty (white space is not empty) or all with
            // `blank`; the first with `first`, whatever it holds; a final line end kept.
            var lines = (value.text + "\n").components(separatedBy: "\n")
            lines.removeLast()
            var indented = blank ? lines.joined(separator: "\n" + prefix)
                : ([lines[0]] + lines.dropFirst().map { $0.isEmpty ? $0 : prefix + $0 }).joined(separator: "\n")
            if first { indented = prefix + indented }
            return .string(indented)
        case "selectattr", "rejectattr", "select", "reject":
            let byAttribute = name.hasSuffix("attr")
            guard !byAttribute || !positional.isEmpty else { throw JinjaError("\(name) needs an attribute name") }
            let attribute = byAttribute ? positional[0].text : nil
            let rest = Array(positional.dropFirst(byAttribute ? 1 : 0))
            let keep = name.hasPrefix("select")
            return .list(try iterate(value).filter { item in
                let subject = try attribute.map { try path(item, $0) } ?? item
                let passes = try rest.first.map { try test($0.text, subject, Array(rest.dropFirst())) } ?? subject.isTrue
                return passes == keep
            })
        case "map":
            if let attribute = keywords["attribute"] {
                return .list(try iterate(value).map { try path($0, attribute.text) })
            }
            guard let filterName = positional.first?.text else { throw JinjaError("map needs a filter or attribute=") }
            return .list(try iterate(value).map { try filter(filterName, $0, (Array(positional.dropFirst()), JinjaDictionary())) })
        case "sum":
            return try iterate(value).reduce(JinjaValue.int(0)) { try binary("+", $0, $1) }
        case "round":
            let digits: Int = if case .int(let number)? = argument(0, "precision") { number } else { 0 }
            let scale = pow(10, Double(digits))
            return .double(((value.number ?? 0) * scale).rounded(.toNearestOrEven) / scale)
        case "format":
            return .string(try percentFormat(value.text, positional))
        case "wordcount":
            return .int(value.text.split(whereSeparator: \.isWhitespace).count)
        default:
            throw JinjaError("no filter named '\(name)'")
        }
    }
}
