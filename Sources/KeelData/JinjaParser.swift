/// A Jinja expression, as the parser builds it.
indirect enum JinjaExpression {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpression])
    case dictionary([(key: JinjaExpression, value: JinjaExpression)])
    case attribute(JinjaExpression, String)
    case index(JinjaExpression, JinjaExpression)
    case slice(JinjaExpression, start: JinjaExpression?, stop: JinjaExpression?, step: JinjaExpression?)
    case call(JinjaExpression, JinjaArguments)
    case filter(JinjaExpression, name: String, JinjaArguments)
    case test(JinjaExpression, name: String, JinjaArguments, negated: Bool)
    /// `not`, unary `-` and `+`.
    case unary(String, JinjaExpression)
    /// `and`, `or`, arithmetic, `~`, comparisons, `in` and `not in`.
    case binary(String, JinjaExpression, JinjaExpression)
    /// `value if condition else otherwise` (no `else`: undefined).
    case conditional(JinjaExpression, condition: JinjaExpression, otherwise: JinjaExpression?)
}

/// A call's arguments: positional, then keywords.
struct JinjaArguments {
    var positional: [JinjaExpression] = []
    var keywords: [(name: String, value: JinjaExpression)] = []
}

/// A template's statements and text.
indirect enum JinjaNode {
    case text(String)
    case output(JinjaExpression)
    case conditional(branches: [(condition: JinjaExpression, body: [JinjaNode])], otherwise: [JinjaNode])
    case loop(targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode], otherwise: [JinjaNode])
    /// `{% set a = … %}`, `{% set a, b = … %}`.
    case set(targets: [String], JinjaExpression)
    /// `{% set ns.attribute = … %}`.
    case setAttribute(namespace: String, attribute: String, JinjaExpression)
    /// `{% set a %}…{% endset %}`.
    case setBlock(name: String, body: [JinjaNode])
    case macro(name: String, parameters: [(name: String, defaultValue: JinjaExpression?)], body: [JinjaNode])
    case breakLoop
    case continueLoop
    /// Hugging Face's `{% generation %}…{% endgeneration %}`: what the assistant writes (a training mask's span).
    case generation([JinjaNode])
    /// `{% filter name %}…{% endfilter %}`.
    case filterBlock(name: String, JinjaArguments, body: [JinjaNode])
}

/// Builds the statement tree of a template's pieces; errors name the line.
struct JinjaParser {
    private let pieces: [JinjaLexer.Piece]
    private var position = 0

    static func parse(_ source: String) throws -> [JinjaNode] {
        var parser = JinjaParser(pieces: try JinjaLexer.pieces(of: source))
        let (nodes, end) = try parser.body(until: [])
        if let end { throw JinjaError("line \(end.line): unexpected {% \(end.name) %}") }
        return nodes
    }

    private init(pieces: [JinjaLexer.Piece]) { self.pieces = pieces }

    /// Nodes up to a statement named in `ends` (returned with its tokens after the name), or to the end.
    private mutating func body(until ends: Set<String>) throws
        -> ([JinjaNode], end: (name: String, tokens: ExpressionParser, line: Int)?) {
        var nodes: [JinjaNode] = []
        while position < pieces.count {
            let piece = pieces[position]
            position += 1
            switch piece {
            case .text(let text): nodes.append(.text(text))
            case .output(let tokens, let line):
                var parser = ExpressionParser(tokens: tokens, line: line)
                nodes.append(.output(try parser.expression()))
                try parser.finish()
            case .statement(let tokens, let line):
                guard case .name(let keyword)? = tokens.first else { throw JinjaError("line \(line): a statement without a name") }
                let parser = ExpressionParser(tokens: Array(tokens.dropFirst()), line: line)
                if ends.contains(keyword) { return (nodes, (keyword, parser, line)) }
                nodes.append(try statement(keyword, parser, line: line, ends: ends))
            }
        }
        // Inside a block, the caller names the block left open.
        return (nodes, nil)
    }

    private mutating func block(_ ends: Set<String>, opened keyword: String, line: Int)
        throws -> ([JinjaNode], end: (name: String, tokens: ExpressionParser, line: Int)) {
        let (nodes, end) = try body(until: ends)
        guard let end else { throw JinjaError("line \(line): {% \(keyword) %} is not closed") }
        return (nodes, end)
    }

    private mutating func statement(_ keyword: String, _ tokens: ExpressionParser, line: Int, ends: Set<String>) throws -> JinjaNode {
        var tokens = tokens
        switch keyword {
        case "if":
            var branches = [(condition: try tokens.expression(), body: [JinjaNode]())]
            try tokens.finish()
            while true {
                let (nodes, end) = try block(["elif", "else", "endif"], opened: "if", line: line)
                branches[branches.count - 1].body = nodes
                var endTokens = end.tokens
                switch end.name {
                case "elif":
                    branches.append((try endTokens.expression(), []))
                    try endTokens.finish()
                case "else":
                    try endTokens.finish()
                    let (otherwise, last) = try block(["endif"], opened: "if", line: line)
                    try last.tokens.finishCopy()
                    return .conditional(branches: branches, otherwise: otherwise)
                default:
                    try endTokens.finish()
                    return .conditional(branches: branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try tokens.name()]
            while tokens.take(.symbol(",")) { targets.append(try tokens.name()) }
            try tokens.expect(.name("in"))
            let iterable = try tokens.expression(conditional: false)
            let filter = tokens.take(.name("if")) ? try tokens.expression(conditional: false) : nil
            _ = tokens.take(.name("recursive"))
            try tokens.finish()
            let (body, end) = try block(["else", "endfor"], opened: "for", line: line)
            try end.tokens.finishCopy()
            var otherwise: [JinjaNode] = []
            if end.name == "else" {
                let (nodes, last) = try block(["endfor"], opened: "for", line: line)
                try last.tokens.finishCopy()
                otherwise = nodes
            }
            return .loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
        case "set":
            let first = try tokens.name()
            if tokens.take(.symbol(".")) {
                let attribute = try tokens.name()
                try tokens.expect(.symbol("="))
                let value = try tokens.expression()
                try tokens.finish()
                return .setAttribute(namespace: first, attribute: attribute, value)
            }
            var targets = [first]
            while tokens.take(.symbol(",")) { targets.append(try tokens.name()) }
            if tokens.atEnd, targets.count == 1 {
                let (body, end) = try block(["endset"], opened: "set", line: line)
                try end.tokens.finishCopy()
                return .setBlock(name: first, body: body)
            }
            try tokens.expect(.symbol("="))
            let value = try tokens.expression()
            try tokens.finish()
            return .set(targets: targets, value)
        case "macro":
            let name = try tokens.name()
            var parameters: [(name: String, defaultValue: JinjaExpression?)] = []
            try tokens.expect(.symbol("("))
            while !tokens.take(.symbol(")")) {
                let parameter = try tokens.name()
                parameters.append((parameter, tokens.take(.symbol("=")) ? try tokens.expression() : nil))
                if !tokens.take(.symbol(",")) {
                    try tokens.expect(.symbol(")"))
                    break
                }
            }
            try tokens.finish()
            let (body, end) = try block(["endmacro"], opened: "macro", line: line)
            try end.tokens.finishCopy()
            return .macro(name: name, parameters: parameters, body: body)
        case "break", "continue":
            try tokens.finish()
            return keyword == "break" ? .breakLoop : .continueLoop
        case "generation":
            try tokens.finish()
            let (body, end) = try block(["endgeneration"], opened: "generation", line: line)
            try end.tokens.finishCopy()
            return .generation(body)
        case "filter":
            let name = try tokens.name()
            let arguments = tokens.peek == .symbol("(") ? try tokens.callArguments() : JinjaArguments()
            try tokens.finish()
            let (body, end) = try block(["endfilter"], opened: "filter", line: line)
            try end.tokens.finishCopy()
            return .filterBlock(name: name, arguments, body: body)
        default:
            throw JinjaError("line \(line): unknown statement {% \(keyword) %}")
        }
    }
}

/// Recursive descent over one tag's tokens, with Jinja's precedence: conditional, or, and, not, comparisons,
/// + and -, ~, * / // %, **, unary - and +, then a primary with its attributes, subscripts, calls, filters and tests.
struct ExpressionParser {
    private let tokens: [JinjaToken]
    private var index = 0
    let line: Int

    init(tokens: [JinjaToken], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var atEnd: Bool { index >= tokens.count }
    var peek: JinjaToken? { index < tokens.count ? tokens[index] : nil }

    private func error(_ message: String) -> JinjaError { JinjaError("line \(line): \(message)") }

    mutating func take(_ token: JinjaToken) -> Bool {
        guard peek == token else { return false }
        index += 1
        return true
    }

    mutating func expect(_ token: JinjaToken) throws {
        guard take(token) else { throw error("expected \(Self.describe(token)), found \(peek.map(Self.describe) ?? "the end of the tag")") }
    }

    func finish() throws {
        if let token = peek { throw error("unexpected \(Self.describe(token))") }
    }

    /// `finish` on a parser handed back by `body` (a let constant).
    func finishCopy() throws { try finish() }

    mutating func name() throws -> String {
        guard case .name(let name)? = peek else { throw error("expected a name, found \(peek.map(Self.describe) ?? "the end of the tag")") }
        index += 1
        return name
    }

    private static func describe(_ token: JinjaToken) -> String {
        switch token {
        case .name(let name): "'\(name)'"
        case .string(let value): "the string \(JinjaValue.pythonRepr(value))"
        case .int(let value): "\(value)"
        case .double(let value): "\(value)"
        case .symbol(let symbol): "'\(symbol)'"
        }
    }

    mutating func expression(conditional: Bool = true) throws -> JinjaExpression {
        var value = try or()
        while conditional, take(.name("if")) {
            let condition = try or()
            let otherwise = take(.name("else")) ? try expression() : nil
            value = .conditional(value, condition: condition, otherwise: otherwise)
        }
        return value
    }

    private mutating func or() throws -> JinjaExpression {
        var value = try and()
        while take(.name("or")) { value = .binary("or", value, try and()) }
        return value
    }

    private mutating func and() throws -> JinjaExpression {
        var value = try not()
        while take(.name("and")) { value = .binary("and", value, try not()) }
        return value
    }

    private mutating func not() throws -> JinjaExpression {
        if take(.name("not")) { return .unary("not", try not()) }
        return try comparison()
    }

    /// Comparisons chain as Python's do: `a < b < c` is `a < b and b < c`.
    private mutating func comparison() throws -> JinjaExpression {
        var left = try sum()
        var chain: JinjaExpression?
        while true {
            let op: String
            if case .symbol(let symbol)? = peek, ["==", "!=", "<", "<=", ">", ">="].contains(symbol) {
                index += 1
                op = symbol
            } else if take(.name("in")) {
                op = "in"
            } else if peek == .name("not"), index + 1 < tokens.count, tokens[index + 1] == .name("in") {
                index += 2
                op = "not in"
            } else {
                return chain ?? left
            }
            let right = try sum()
            let link = JinjaExpression.binary(op, left, right)
            chain = chain.map { .binary("and", $0, link) } ?? link
            left = right
        }
    }

    private mutating func sum() throws -> JinjaExpression {
        var value = try concatenation()
        while case .symbol(let symbol)? = peek, symbol == "+" || symbol == "-" {
            index += 1
            value = .binary(symbol, value, try concatenation())
        }
        return value
    }

    private mutating func concatenation() throws -> JinjaExpression {
        var value = try product()
        while take(.symbol("~")) { value = .binary("~", value, try product()) }
        return value
    }

    private mutating func product() throws -> JinjaExpression {
        var value = try power()
        while case .symbol(let symbol)? = peek, ["*", "/", "//", "%"].contains(symbol) {
            index += 1
            value = .binary(symbol, value, try power())
        }
        return value
    }

    private mutating func power() throws -> JinjaExpression {
        var value = try unary()
        while take(.symbol("**")) { value = .binary("**", value, try unary()) }
        return value
    }

    private mutating func unary(filters: Bool = true) throws -> JinjaExpression {
        var value: JinjaExpression
        if take(.symbol("-")) {
            value = .unary("-", try unary(filters: false))
        } else if take(.symbol("+")) {
            value = .unary("+", try unary(filters: false))
        } else {
            value = try primary()
        }
        value = try postfix(value)
        return filters ? try filtersAndTests(value) : value
    }

    private mutating func primary() throws -> JinjaExpression {
        guard let token = peek else { throw error("expected an expression, found the end of the tag") }
        index += 1
        switch token {
        case .name(let name):
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name)
            }
        case .string(var value):
            // Adjacent strings join, as in Python.
            while case .string(let next)? = peek {
                value += next
                index += 1
            }
            return .literal(.string(value))
        case .int(let value): return .literal(.int(value))
        case .double(let value): return .literal(.double(value))
        case .symbol("("):
            if take(.symbol(")")) { return .list([]) }
            let first = try expression()
            guard take(.symbol(",")) else {
                try expect(.symbol(")"))
                return first
            }
            // A tuple: a list here.
            var items = [first]
            while !take(.symbol(")")) {
                items.append(try expression())
                if !take(.symbol(",")) { try expect(.symbol(")")); break }
            }
            return .list(items)
        case .symbol("["):
            var items: [JinjaExpression] = []
            while !take(.symbol("]")) {
                items.append(try expression())
                if !take(.symbol(",")) { try expect(.symbol("]")); break }
            }
            return .list(items)
        case .symbol("{"):
            var items: [(key: JinjaExpression, value: JinjaExpression)] = []
            while !take(.symbol("}")) {
                let key = try expression()
                try expect(.symbol(":"))
                items.append((key, try expression()))
                if !take(.symbol(",")) { try expect(.symbol("}")); break }
            }
            return .dictionary(items)
        default:
            throw error("unexpected \(Self.describe(token))")
        }
    }

    private mutating func postfix(_ value: JinjaExpression) throws -> JinjaExpression {
        var value = value
        while true {
            if take(.symbol(".")) {
                switch peek {
                case .name(let name)?: index += 1; value = .attribute(value, name)
                case .int(let number)?: index += 1; value = .index(value, .literal(.int(number)))
                default: throw error("expected a name after '.'")
                }
            } else if take(.symbol("[")) {
                value = try subscriptOrSlice(value)
            } else if peek == .symbol("(") {
                value = .call(value, try callArguments())
            } else {
                return value
            }
        }
    }

    private mutating func subscriptOrSlice(_ value: JinjaExpression) throws -> JinjaExpression {
        var parts: [JinjaExpression?] = [nil]
        var isSlice = false
        while !take(.symbol("]")) {
            if take(.symbol(":")) {
                isSlice = true
                parts.append(nil)
                continue
            }
            guard parts[parts.count - 1] == nil else { throw error("expected ']'") }
            parts[parts.count - 1] = try expression()
        }
        guard isSlice else {
            guard let key = parts[0] else { throw error("an empty subscript") }
            return .index(value, key)
        }
        guard parts.count <= 3 else { throw error("a slice takes at most three parts") }
        return .slice(value, start: parts[0], stop: parts.count > 1 ? parts[1] : nil, step: parts.count > 2 ? parts[2] : nil)
    }

    mutating func callArguments() throws -> JinjaArguments {
        try expect(.symbol("("))
        var arguments = JinjaArguments()
        while !take(.symbol(")")) {
            if case .name(let name)? = peek, index + 1 < tokens.count, tokens[index + 1] == .symbol("=") {
                index += 2
                arguments.keywords.append((name, try expression()))
            } else {
                arguments.positional.append(try expression())
            }
            if !take(.symbol(",")) { try expect(.symbol(")")); break }
        }
        return arguments
    }

    private mutating func filtersAndTests(_ value: JinjaExpression) throws -> JinjaExpression {
        var value = value
        while true {
            if take(.symbol("|")) {
                var name = try self.name()
                while take(.symbol(".")) { name += "." + (try self.name()) }
                let arguments = peek == .symbol("(") ? try callArguments() : JinjaArguments()
                value = try postfix(.filter(value, name: name, arguments))
            } else if take(.name("is")) {
                let negated = take(.name("not"))
                let name = try self.name()
                var arguments = JinjaArguments()
                if peek == .symbol("(") {
                    arguments = try callArguments()
                } else if let next = peek, Self.startsTestArgument(next) {
                    // `is divisibleby 3`, `is sameas false`: one argument without parentheses.
                    arguments.positional = [try postfix(try primary())]
                }
                value = .test(value, name: name, arguments, negated: negated)
            } else {
                return value
            }
        }
    }

    private static func startsTestArgument(_ token: JinjaToken) -> Bool {
        switch token {
        case .string, .int, .double: true
        case .name(let name): !["else", "or", "and", "if", "not", "in", "is"].contains(name)
        case .symbol(let symbol): symbol == "[" || symbol == "{"
        }
    }
}
