import CProcessControl
import Foundation
import Glibc
import KeelCore

/// Renders pages with headless Chromium (Debian's `chromium-headless-shell`) and returns the DOM its scripts
/// built (`--dump-dom`), for pages whose text exists only once JavaScript has run.
///
/// Each page is written to a private temporary directory and opened from there as a file, with every host name
/// resolving to nothing, so the browser reaches no network and no other file. Each render has its own browser
/// profile and process group, a virtual-time budget for the page's timers, and a wall-clock limit after which
/// the whole group is killed: a hung or crashed browser costs that page, never the run.
public struct PageRenderer: Sendable {
    /// The browser binary.
    public let browser: String
    /// Seconds a page may take, browser start included, before its browser is killed.
    public var timeout: Double = 15
    /// Milliseconds of page time (timers, animation frames) the browser lets pass before dumping the DOM.
    public var virtualTimeBudget = 5000

    /// `browser`: a path, or nil to look for `chromium-headless-shell`, then `chromium`, on PATH.
    public init(browser: String? = nil) throws {
        // The browser's helpers outlive a killed browser briefly; as their reaper this process can wait for them.
        _ = keel_become_subreaper()
        if let browser {
            guard FileManager.default.isExecutableFile(atPath: browser) else { throw KeelError("--chromium \(browser): not an executable file") }
            self.browser = browser
            return
        }
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for name in ["chromium-headless-shell", "chromium"] {
            if let found = directories.map({ "\($0)/\(name)" }).first(where: FileManager.default.isExecutableFile) {
                self.browser = found
                return
            }
        }
        throw KeelError("rendering needs headless Chromium: apt install chromium-headless-shell (scripts/setup.sh does), or pass --chromium PATH")
    }

    /// The rendered DOM of `html`, or why it could not be had (a timeout, a crash, nothing written).
    public func render(html: [UInt8]) -> Result<String, KeelError> {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-render-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let page = directory.appendingPathComponent("page.html"), output = directory.appendingPathComponent("dom.html")
        do {
            try AtomicFile.createDirectory(directory.appendingPathComponent("profile"))
            try Data(html).write(to: page)
        } catch {
            return .failure(KeelError("cannot write the page to render: \(AtomicFile.systemReason(error))"))
        }
        switch run(arguments(profile: directory) + ["--dump-dom", page.absoluteString], stdout: output.path) {
        case .failure(let error): return .failure(error)
        case .success:
            guard let dom = try? String(contentsOf: output, encoding: .utf8), !dom.isEmpty else {
                return .failure(KeelError("the browser wrote no DOM"))
            }
            return .success(dom)
        }
    }

    /// A PNG of the local page `file` (which must not need the network) in a window of `width` × `height`
    /// pixels, written to `png`.
    public func screenshot(of file: URL, width: Int, height: Int, to png: URL) -> Result<Void, KeelError> {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-render-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            try AtomicFile.createDirectory(directory.appendingPathComponent("profile"))
        } catch {
            return .failure(KeelError("cannot make the browser's profile directory: \(AtomicFile.systemReason(error))"))
        }
        let shot = directory.appendingPathComponent("shot.png")
        let arguments = arguments(profile: directory) + ["--hide-scrollbars", "--window-size=\(width),\(height)",
                                                         "--screenshot=\(shot.path)", file.absoluteString]
        if case .failure(let error) = run(arguments, stdout: "/dev/null") { return .failure(error) }
        guard let bytes = try? Data(contentsOf: shot), !bytes.isEmpty else { return .failure(KeelError("the browser wrote no screenshot")) }
        do {
            try AtomicFile.write(bytes, to: png)
        } catch {
            return .failure(KeelError("cannot write \(png.path): \(AtomicFile.systemReason(error))"))
        }
        return .success(())
    }

    /// The browser's command line up to the page: headless, no network but local files, a fresh profile.
    private func arguments(profile directory: URL) -> [String] {
        var arguments = [browser, "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--mute-audio",
                         "--user-data-dir=\(directory.path)/profile", "--virtual-time-budget=\(virtualTimeBudget)",
                         "--host-resolver-rules=MAP * ~NOTFOUND"]
        // Chromium's sandbox refuses to run as root; as root there is nothing left for it to protect anyway.
        if getuid() == 0 { arguments.insert("--no-sandbox", at: 1) }
        return arguments
    }

    /// Renders every page, `workers` browsers at a time; results in the order given.
    public func renderAll(_ pages: [[UInt8]], workers: Int) -> [Result<String, KeelError>] {
        // `render` reports failures as values, so nothing is thrown here.
        (try? concurrentMap(pages.count, workers: workers) { render(html: pages[$0]) }) ?? []
    }

    /// Runs `arguments` in its own process group, stdout to `stdout`, stderr discarded; kills the group after
    /// `timeout` seconds.
    private func run(_ arguments: [String], stdout: String) -> Result<Void, KeelError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, browser, &actions, &attributes, &argv, environ)
        guard spawned == 0 else { return .failure(KeelError("cannot start \(browser): \(String(cString: strerror(spawned)))")) }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                Self.killGroup(pid)
                waitpid(pid, &status, 0)
                Self.reapGroup(pid)
                return .failure(KeelError(String(format: "the browser took more than %.0f s and was stopped", timeout)))
            }
            usleep(20_000)
        }
        // The browser's helpers (renderer, GPU, zygote) share its group and must not outlive it.
        Self.killGroup(pid)
        Self.reapGroup(pid)
        let signal = status & 0x7F, code = (status >> 8) & 0xFF
        if signal != 0 { return .failure(KeelError("the browser crashed (signal \(signal))")) }
        if code != 0 { return .failure(KeelError("the browser failed (exit status \(code))")) }
        return .success(())
    }

    private static func killGroup(_ group: pid_t) { kill(-group, SIGKILL) }

    /// Waits (up to a second) for the killed group's other members, which this process, their reaper, inherits.
    private static func reapGroup(_ group: pid_t) {
        let deadline = Date().addingTimeInterval(1)
        var status: Int32 = 0
        while Date() < deadline {
            while waitpid(-group, &status, WNOHANG) > 0 {}
            if kill(-group, 0) != 0, errno == ESRCH { return }
            usleep(5_000)
        }
    }
}
