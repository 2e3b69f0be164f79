import Foundation

/// A Jinja template — the language of Hugging Face chat templates — parsed once and rendered with Python's
/// semantics where templates depend on them, as `transformers` compiles chat templates (a sandbox that cannot
/// change its inputs, `trim_blocks` and `lstrip_blocks`, `break`/`continue`, a `tojson` that keeps non-ASCII text and
/// key order). What it runs: `if`/`elif`/`else`, `for` (with `loop`, an `if` filter, `else`, unpacking), `set` (names,
/// namespace attributes, blocks), `macro`, `filter` blocks, `raw`, Hugging Face's `generation` blocks, and the
/// expressions, filters, tests and string/dictionary methods that chat templates use (JinjaBuiltins.swift). A
/// template using something else fails with a message naming it, never renders something else.
public struct JinjaTemplate: Sendable {
    private let nodes: [JinjaNode]

    /// Parses `source`; a syntax error names its line.
    public init(_ source: String) throws {
        nodes = try JinjaParser.parse(source)
    }

    /// The text the template renders with `variables` (and the built-in functions), and the spans of the output
    /// written inside `{% generation %}` blocks (UTF-8 byte offsets).
    public func render(_ variables: JinjaDictionary, functions: [String: JinjaValue] = [:]) throws
        -> (text: String, generated: [Range<Int>]) {
        var renderer = JinjaRenderer(globals: variables, functions: functions)
        try renderer.render(nodes)
        return (renderer.output, renderer.generated)
    }
}

extension JinjaNode: @unchecked Sendable {}

/// The names one scope defines.
final class JinjaScope {
    var values: [String: JinjaValue] = [:]
}

/// The state of one rendering: the output, the scopes of names, the spans of generation blocks.
struct JinjaRenderer {
    private(set) var output = ""
    private(set) var generated: [Range<Int>] = []
    /// Innermost last. A `for` body (afresh each iteration) and a macro call open one; `if` does not (a `set` there is
    /// seen after it). Shared objects, so that a macro sees the names of the scopes it was defined in as they are
    /// when it is called (itself included: macros recurse).
    private var scopes: [JinjaScope]
    private let globals: JinjaDictionary
    private var functions: [String: JinjaValue]

    /// How a block ended: on its own, or at a `break` or `continue` that its loop must take.
    enum Flow { case normal, breakLoop, continueLoop }

    init(globals: JinjaDictionary, functions: [String: JinjaValue]) {
        self.globals = globals
        self.functions = JinjaBuiltins.functions.merging(functions) { _, given in given }
        scopes = [JinjaScope()]
    }

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let value = scope.values[name] { return value } }
        return globals[name] ?? functions[name] ?? .undefined(name)
    }

    private func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1].values[name] = value }

    @discardableResult
    mutating func render(_ nodes: [JinjaNode]) throws -> Flow {
        for node in nodes {
            let flow = try render(node)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private mutating func render(_ node: JinjaNode) throws -> Flow {
        switch node {
        case .text(let text):
            output += text
        case .output(let expression):
            output += try evaluate(expression).text
        case .conditional(let branches, let otherwise):
            for branch in branches where try evaluate(branch.condition).isTrue {
                return try render(branch.body)
            }
            return try render(otherwise)
        case .loop(let targets, let iterable, let filter, let body, let otherwise):
            return try loop(targets: targets, over: try evaluate(iterable), filter: filter, body: body, otherwise: otherwise)
        case .set(let targets, let expression):
            try bind(try evaluate(expression), to: targets)
        case .setAttribute(let namespace, let attribute, let expression):
            guard case .namespace(let space) = lookup(namespace) else {
                throw JinjaError("cannot assign attribute on non-namespace object '\(namespace)'")
            }
            space.attributes[attribute] = try evaluate(expression)
        case .setBlock(let name, let body):
            assign(name, .string(try capture(body)))
        case .macro(let name, let parameters, let body):
            assign(name, .function(macro(name, parameters: parameters, body: body)))
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case .generation(let body):
            let start = output.utf8.count
            let flow = try render(body)
            generated.append(start..<output.utf8.count)
            return flow
        case .filterBlock(let name, let arguments, let body):
            let text = try capture(body)
            output += try JinjaBuiltins.filter(name, .string(text), try evaluate(arguments)).text
        }
        return .normal
    }

    /// What `body` renders, kept out of the output.
    private mutating func capture(_ body: [JinjaNode]) throws -> String {
        let saved = output
        output = ""
        defer { output = saved }
        try render(body)
        return output
    }

    private mutating func loop(targets: [String], over iterable: JinjaValue, filter: JinjaExpression?, body: [JinjaNode],
                               otherwise: [JinjaNode]) throws -> Flow {
        let all = try JinjaBuiltins.iterate(iterable)
        scopes.append(JinjaScope())
        defer { scopes.removeLast() }
        var items: [JinjaValue] = []
        for item in all {
            // `for x in xs if condition`: the condition sees the loop variables, not `loop`.
            if let filter {
                try bind(item, to: targets)
                guard try evaluate(filter).isTrue else { continue }
            }
            items.append(item)
        }
        if items.isEmpty { return try render(otherwise) }
        for (index, item) in items.enumerated() {
            // Each iteration starts afresh: a `set` in the body lasts until the iteration ends, as in Jinja.
            scopes[scopes.count - 1] = JinjaScope()
            try bind(item, to: targets)
            assign("loop", .dictionary(JinjaDictionary([
                ("index", .int(index + 1)), ("index0", .int(index)), ("revindex", .int(items.count - index)),
                ("revindex0", .int(items.count - index - 1)), ("first", .bool(index == 0)),
                ("last", .bool(index == items.count - 1)), ("length", .int(items.count)),
                ("previtem", index > 0 ? items[index - 1] : .undefined("previtem")),
                ("nextitem", index + 1 < items.count ? items[index + 1] : .undefined("nextitem")),
            ])))
            if try render(body) == .breakLoop { break }
        }
        return .normal
    }

    /// Binds names to a value (unpacked among several): a `set`'s, or a loop's variables to an item.
    private func bind(_ item: JinjaValue, to targets: [String]) throws {
        if targets.count == 1 {
            assign(targets[0], item)
            return
        }
        let parts = try JinjaBuiltins.items(of: item)
        guard parts.count == targets.count else {
            throw JinjaError("cannot unpack \(parts.count) values into \(targets.count) names")
        }
        for (target, part) in zip(targets, parts) { assign(target, part) }
    }

    /// A macro: a call renders its body in a scope of its own holding the arguments (defaults evaluated at the call).
    private func macro(_ name: String, parameters: [(name: String, defaultValue: JinjaExpression?)], body: [JinjaNode]) -> JinjaFunction {
        let definition = self
        return JinjaFunction(name) { arguments, keywords in
            var renderer = definition
            renderer.output = ""
            renderer.generated = []
            renderer.scopes.append(JinjaScope())
            guard arguments.count <= parameters.count else {
                throw JinjaError("macro '\(name)' takes \(parameters.count) arguments, not \(arguments.count)")
            }
            for (index, parameter) in parameters.enumerated() {
                let value = index < arguments.count ? arguments[index]
                    : try keywords[parameter.name] ?? parameter.defaultValue.map { try renderer.evaluate($0) } ?? .undefined(parameter.name)
                renderer.assign(parameter.name, value)
            }
            try renderer.render(body)
            return .string(renderer.output)
        }
    }

    func evaluate(_ arguments: JinjaArguments) throws -> (positional: [JinjaValue], keywords: JinjaDictionary) {
        (try arguments.positional.map(evaluate),
         JinjaDictionary(try arguments.keywords.map { ($0.name, try evaluate($0.value)) }))
    }

    func evaluate(_ expression: JinjaExpression) throws -> JinjaValue {
        switch expression {
        case .literal(let value): return value
        case .name(let name): return lookup(name)
        case .list(let items): return .list(try items.map(evaluate))
        case .dictionary(let items):
            var dictionary = JinjaDictionary()
            for item in items {
                let key = try evaluate(item.key)
                guard case .string(let name) = key else { throw JinjaError("dictionary keys must be strings here, not \(key.typeName)") }
                dictionary[name] = try evaluate(item.value)
            }
            return .dictionary(dictionary)
        case .attribute(let base, let name):
            return try JinjaBuiltins.attribute(try evaluate(base), name)
        case .index(let base, let key):
            return try JinjaBuiltins.item(try evaluate(base), try evaluate(key))
        case .slice(let base, let start, let stop, let step):
            return try JinjaBuiltins.slice(try evaluate(base), start: try start.map(evaluate), stop: try stop.map(evaluate),
                                           step: try step.map(evaluate))
        case .call(let callee, let arguments):
            let (positional, keywords) = try evaluate(arguments)
            let function = try evaluate(callee)
            guard case .function(let body) = function else {
                if case .undefined(let name) = function { throw JinjaError("'\(name)' is undefined") }
                throw JinjaError("'\(function.typeName)' object is not callable")
            }
            return try body.call(positional, keywords)
        case .filter(let base, let name, let arguments):
            let value = try evaluate(base)
            let (positional, keywords) = try evaluate(arguments)
            return try JinjaBuiltins.filter(name, value, (positional, keywords))
        case .test(let base, let name, let arguments, let negated):
            let value = try evaluate(base)
            let result = try JinjaBuiltins.test(name, value, try evaluate(arguments).positional)
            return .bool(result != negated)
        case .unary(let op, let operand):
            let value = try evaluate(operand)
            switch op {
            case "not": return .bool(!value.isTrue)
            case "-":
                switch value {
                case .int(let number): return .int(-number)
                case .double(let number): return .double(-number)
                default: throw JinjaError("bad operand type for unary -: '\(value.typeName)'")
                }
            default: return value
            }
        case .binary("and", let left, let right):
            let value = try evaluate(left)
            return value.isTrue ? try evaluate(right) : value
        case .binary("or", let left, let right):
            let value = try evaluate(left)
            return value.isTrue ? value : try evaluate(right)
        case .binary(let op, let left, let right):
            return try JinjaBuiltins.binary(op, try evaluate(left), try evaluate(right))
        case .conditional(let value, let condition, let otherwise):
            if try evaluate(condition).isTrue { return try evaluate(value) }
            return try otherwise.map(evaluate) ?? .undefined("conditional")
        }
    }
}
