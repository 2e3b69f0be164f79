import Foundation

/// The engine an environment variable names (`KEEL_QDOT_ENGINE`, `KEEL_BF16_ENGINE`), when it names one this machine
/// runs. A name that is not one of `engines`, or one the machine lacks, is not silently ignored: a warning on standard
/// error says what was wrong and that `fallback` runs instead, and the result is nil. Unset: nil, no warning. Callers
/// keep the choice, so the warning comes once a process.
public func environmentChoice<Engine>(_ variable: String, among engines: [Engine], name: (Engine) -> String,
                                      isAvailable: (Engine) -> Bool, fallback: String,
                                      environment: [String: String] = ProcessInfo.processInfo.environment) -> Engine? {
    guard let wanted = environment[variable] else { return nil }
    guard let engine = engines.first(where: { name($0) == wanted }) else {
        let names = engines.map(name).joined(separator: ", ")
        warn("\(variable)=\(wanted) is not one of \(names); using \(fallback)")
        return nil
    }
    guard isAvailable(engine) else {
        warn("\(variable)=\(wanted): this CPU does not run it; using \(fallback)")
        return nil
    }
    return engine
}

/// Writes `keel: warning: message` on standard error: something the user asked for that Keel does otherwise.
public func warn(_ message: String) {
    StandardStreams.error("keel: warning: \(message)\n")
}
