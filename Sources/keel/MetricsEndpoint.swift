import Foundation
import KeelTrain

/// `keel train --metrics-port`: the newest value of every field of `metrics.jsonl` served at `/metrics` in
/// Prometheus's text exposition format (one gauge per field, named `keel_<field>`), on world rank 0, while the
/// run trains.
enum MetricsEndpoint {
    /// Answers `server`'s requests from `log`'s newest values, on a thread of its own.
    static func serve(_ log: MetricsLog, on server: HTTPServer) {
        let thread = Thread {
            server.run { connection in
                defer { connection.close() }
                guard case .success(let request) = connection.readRequest(maximumBody: 1 << 16) else { return }
                guard request.method == "GET", request.path == "/metrics" || request.path.hasPrefix("/metrics?") else {
                    connection.respond(status: 404, contentType: "text/plain", body: Data("only /metrics is served\n".utf8))
                    return
                }
                connection.respond(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                   body: Data(exposition(log.latestValues()).utf8))
            }
        }
        thread.start()
    }

    /// The values as Prometheus gauges, in name order.
    static func exposition(_ values: [String: Double]) -> String {
        values.keys.sorted().map { key in
            // Prometheus names are [a-zA-Z_:][a-zA-Z0-9_:]*: ASCII only.
            let name = "keel_" + String(key.map { $0.isASCII && ($0.isLetter || $0.isNumber) || $0 == "_" ? $0 : "_" })
            let value = values[key]!
            let text = value.isNaN ? "NaN" : value.isInfinite ? (value > 0 ? "+Inf" : "-Inf") : "\(value)"
            return "# HELP \(name) \(key) in metrics.jsonl, newest value\n# TYPE \(name) gauge\n\(name) \(text)\n"
        }.joined()
    }
}
