import Foundation
import Glibc
import KeelCore
import Synchronization

/// A request as the server reads it: method, path, headers (names in lower case) and body.
struct HTTPRequest {
    let method: String
    let path: String
    let headers: [String: String]
    let body: Data
}

/// One client connection: the request it sent, and the response written back on it.
///
/// Events are written from the generation thread every request shares, so they never wait for the client: what it
/// has not taken yet waits here, and a client that leaves `unsentLimit` bytes unread has gone. A whole request must
/// arrive within `timeoutSeconds` (a client sending a byte a minute holds no thread for ever), and the connection
/// thread's own writes wait at most that long for the client at a time.
final class HTTPConnection: @unchecked Sendable {
    private let socket: Int32
    private var closed = false
    /// Event bytes the client has not taken yet, sent before any later ones.
    private var unsent = Data()
    /// Where `clientHasGone` reads what the client sent after its request (it looks at every token).
    private var discarded = [UInt8](repeating: 0, count: 4096)
    /// The most event bytes a client may leave unread (thousands of tokens' events) before it counts as gone.
    static let unsentLimit = 4 << 20
    /// How long a whole request, or a waiting write, may take the client.
    let timeoutSeconds: Int

    init(socket: Int32, timeoutSeconds: Int) {
        self.socket = socket
        self.timeoutSeconds = timeoutSeconds
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            setsockopt(socket, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    deinit { close() }

    /// Reads one request: the head up to a blank line (at most 64 KiB), then `Content-Length` bytes of body (at
    /// most `maximumBody`); a failure, with its status and reason, when the client sent something else.
    ///
    /// A client that asks `Expect: 100-continue` (curl does for bodies over 1 KiB) is told to go on before the body is
    /// read, or refused at once when the body would be too long; otherwise it would wait a second for the answer.
    func readRequest(maximumBody: Int) -> Result<HTTPRequest, HTTPFailure> {
        let deadline = Date().addingTimeInterval(Double(timeoutSeconds))
        let late = HTTPFailure(status: 408, message: "the request did not arrive within \(timeoutSeconds) s")
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let separator = Data("\r\n\r\n".utf8)
        var headEnd: Range<Data.Index>?
        while headEnd == nil {
            guard buffer.count < 65_536 else { return .failure(HTTPFailure(status: 431, message: "the request head is over 64 KiB")) }
            let received = recv(socket, &chunk, chunk.count, 0)
            guard received > 0 else { return .failure(received < 0 && Self.timedOut ? late : HTTPFailure(status: 400, message: "the connection closed before a whole request")) }
            buffer.append(contentsOf: chunk[0..<received])
            headEnd = buffer.range(of: separator)
            if headEnd == nil, Date() > deadline { return .failure(late) }
        }
        let head = String(decoding: buffer[..<headEnd!.lowerBound], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else {
            return .failure(HTTPFailure(status: 400, message: "not an HTTP/1 request line"))
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return .failure(HTTPFailure(status: 400, message: "a header line without a colon")) }
            // White space in a name, or a line folded onto the one before, is refused (RFC 9112 §5.1, §5.2): a proxy in
            // front may read such a header otherwise than the server does.
            let name = line[..<colon].lowercased(), value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
                return .failure(HTTPFailure(status: 400, message: "a header name that is empty or holds white space"))
            }
            // Two different lengths: which one frames the body is ambiguous (RFC 9112 §6.3), the ground of request smuggling.
            if name == "content-length", let earlier = headers[name], earlier != value {
                return .failure(HTTPFailure(status: 400, message: "Content-Length given twice, as \(earlier) and \(value)"))
            }
            headers[name] = value
        }
        if headers["transfer-encoding"] != nil {
            return .failure(HTTPFailure(status: 411, message: "send the body with a Content-Length, not chunked"))
        }
        let length = Int(headers["content-length"] ?? "0") ?? -1
        guard length >= 0 else { return .failure(HTTPFailure(status: 400, message: "Content-Length is not a number")) }
        guard length <= maximumBody else { return .failure(HTTPFailure(status: 413, message: "the body is over \(maximumBody) bytes")) }
        var body = Data(buffer[headEnd!.upperBound...])
        // HTTP/1.0 has no interim responses: its Expect is ignored (RFC 9110 §10.1.1).
        if let expectation = headers["expect"], requestLine[2] != "HTTP/1.0" {
            guard expectation.lowercased() == "100-continue" else {
                return .failure(HTTPFailure(status: 417, message: "the server meets no expectation but 100-continue (got \(expectation))"))
            }
            if body.count < length, !write(Data("HTTP/1.1 100 Continue\r\n\r\n".utf8)) {
                return .failure(HTTPFailure(status: 400, message: "the connection closed before a whole request"))
            }
        }
        while body.count < length {
            let received = recv(socket, &chunk, min(chunk.count, length - body.count), 0)
            guard received > 0 else { return .failure(received < 0 && Self.timedOut ? late : HTTPFailure(status: 400, message: "the connection closed inside the body")) }
            body.append(contentsOf: chunk[0..<received])
            if body.count < length, Date() > deadline { return .failure(late) }
        }
        return .success(HTTPRequest(method: String(requestLine[0]), path: String(requestLine[1]), headers: headers,
                                    body: body.prefix(length)))
    }

    /// Writes a whole response with a body of `contentType`, and closes the connection.
    ///
    /// With `draining`, for a refusal of a request not read whole (a body over the limit): closing with its bytes
    /// unread would reset the connection, and the client would lose the response with them. So the server stops
    /// sending and reads what still comes (at most `drainLimit` bytes for at most 5 s) before it closes.
    func respond(status: Int, contentType: String = "application/json", body: Data, draining: Bool = false) {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\nContent-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        if write(Data(head.utf8) + body), draining {
            shutdown(socket, Int32(SHUT_WR))
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var chunk = [UInt8](repeating: 0, count: 65_536), drained = 0
            let deadline = Date().addingTimeInterval(5)
            while drained < Self.drainLimit, Date() < deadline {
                let received = recv(socket, &chunk, chunk.count, 0)
                guard received > 0 else { break }
                drained += received
            }
        }
        close()
    }

    /// Whether the receive that just failed waited its whole timeout (errno as `SO_RCVTIMEO` leaves it).
    private static var timedOut: Bool { errno == EAGAIN || errno == EWOULDBLOCK }

    /// The most bytes of a refused request read before its connection closes.
    static let drainLimit = 64 << 20

    /// Starts a server-sent-events response; `event` then writes each event, `close` ends it.
    func beginEvents() -> Bool {
        write(Data("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n".utf8))
    }

    /// Queues `data: JSON` as one event and sends what the socket takes now, without waiting; false (and the
    /// connection closed) once the client has gone or left more than `unsentLimit` bytes unread.
    func event(_ data: String) -> Bool {
        guard !closed else { return false }
        unsent.append(Data("data: \(data)\n\n".utf8))
        while !unsent.isEmpty {
            let result = unsent.withUnsafeBytes { send(socket, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if result > 0 {
                unsent.removeFirst(result)
            } else if result < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                break
            } else {
                unsent = Data()
                close()
                return false
            }
        }
        guard unsent.count <= Self.unsentLimit else {
            unsent = Data()
            close()
            return false
        }
        return true
    }

    /// Whether the client has closed its side of the connection, or it failed: nobody will read what a request
    /// generates (an ASGI server's `http.disconnect`).
    ///
    /// Whatever the client sent after its request is read and dropped (the connection serves one request): only
    /// past it can the end of the connection be seen. At most 256 KiB a look, so a client sending without end
    /// cannot hold the thread every request shares.
    var clientHasGone: Bool {
        guard !closed else { return true }
        for _ in 0..<64 {
            let result = recv(socket, &discarded, discarded.count, Int32(MSG_DONTWAIT))
            if result > 0 { continue }
            return result == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        }
        return false
    }

    /// Writes all of `data` (waiting for the client at most `timeoutSeconds` at a time); false when the client has
    /// gone.
    @discardableResult
    private func write(_ data: Data) -> Bool {
        guard !closed else { return false }
        return data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let result = send(socket, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard result > 0 else { return false }
                sent += result
            }
            return true
        }
    }

    /// Sends the events still waiting (waiting for the client as a write does), then closes.
    func close() {
        guard !closed else { return }
        if !unsent.isEmpty {
            let rest = unsent
            unsent = Data()
            write(rest)
        }
        closed = true
        Glibc.close(socket)
    }

    static func reason(_ status: Int) -> String {
        [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
         413: "Payload Too Large", 417: "Expectation Failed", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
         503: "Service Unavailable"][status] ?? "Error"
    }
}

/// A request the server refuses, with its status and why.
struct HTTPFailure: Error {
    let status: Int
    let message: String
    /// OpenAI's error code ("context_length_exceeded"), when there is one.
    var code: String? = nil
}

/// A listening socket on a host and port; each accepted connection is handled on a thread of its own.
final class HTTPServer: Sendable {
    private let socket: Int32
    let port: Int
    /// How long each connection's request may take to arrive (`HTTPConnection.timeoutSeconds`).
    let timeoutSeconds: Int
    /// The most connections handled at once: each holds a thread and a descriptor for up to the timeout, so clients
    /// that open many and send slowly would otherwise use the process's descriptors up (its checkpoint and data files
    /// too, for a training run's metrics endpoint). One more is answered 503 at once.
    let maxConnections: Int
    private let open = Atomic<Int>(0)

    /// Listens on `host` (an IPv4 address) and `port` (0: any free port, reported in `port`); a request must arrive
    /// within `timeoutSeconds`; at most `maxConnections` are handled at once.
    init(host: String, port: Int, timeoutSeconds: Int = 60, maxConnections: Int = 256) throws {
        self.maxConnections = maxConnections
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw KeelError("cannot open a socket (\(String(cString: strerror(errno))))") }
        var yes: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            Glibc.close(socket)
            throw KeelError("\(host) is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(socket, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(socket)
            throw KeelError("cannot listen on \(host):\(port) (\(reason))")
        }
        var actual = sockaddr_in(), length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        self.socket = socket
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        self.timeoutSeconds = timeoutSeconds
    }

    /// Connections being handled now.
    var openConnections: Int { open.load(ordering: .relaxed) }

    /// Accepts connections, handing each to `handle` on a new thread, until `stop` says so (it is asked at least
    /// five times a second); then closes the listening socket, so that new connections are refused (a load balancer
    /// moves on), and returns while those accepted may still be handled (`openConnections`).
    func run(_ handle: @escaping @Sendable (HTTPConnection) -> Void, until stop: () -> Bool = { false }) {
        defer { Glibc.close(socket) }
        while !stop() {
            var listening = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&listening, 1, 200) > 0 else { continue }
            let client = accept(socket, nil, nil)
            guard client >= 0 else {
                // Out of descriptors or memory: the connection stays queued and accept fails again at once, so wait
                // for connections to close rather than spin.
                if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) { usleep(100_000) }
                continue
            }
            let connection = HTTPConnection(socket: client, timeoutSeconds: timeoutSeconds)
            guard open.add(1, ordering: .relaxed).newValue <= maxConnections else {
                open.subtract(1, ordering: .relaxed)
                Self.refuse(connection, "the server has all the connections it takes open (--max-connections); try again later")
                continue
            }
            guard Self.startThread({ handle(connection); self.open.subtract(1, ordering: .relaxed) }) else {
                open.subtract(1, ordering: .relaxed)
                // Out of threads or memory: this client is told so, its descriptor closed (not held for ever by a
                // thread that never ran), and the server goes on with the connections it has.
                Self.refuse(connection, "the server cannot take another connection now")
                usleep(100_000)
                continue
            }
        }
    }

    /// Answers `connection` 503 with `message` in OpenAI's error shape (`message` holds no character JSON escapes), and
    /// closes it.
    private static func refuse(_ connection: HTTPConnection, _ message: String) {
        connection.respond(status: 503, body: Data(#"{"error":{"message":"\#(message)","type":"server_error","param":null,"code":null}}"#.utf8))
        connection.close()
    }

    /// Runs `body` on a new detached thread with a 1 MiB stack; false when none could be started. (Foundation's
    /// `Thread.start` reports no failure: the connection it was given would stay open, never answered.)
    private static func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
        final class Body { let run: @Sendable () -> Void; init(_ run: @escaping @Sendable () -> Void) { self.run = run } }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 1 << 20)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(&thread, &attributes, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard started == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return false
        }
        return true
    }
}
