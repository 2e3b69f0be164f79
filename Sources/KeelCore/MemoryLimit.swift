import Foundation

/// How much memory this process's machine gives it: physical memory and swap (`/proc/meminfo`), or less where its
/// cgroup sets a limit (cgroup v2's `memory.max` plus `memory.swap.max`, v1's `memory.limit_in_bytes`: a container's
/// or a Slurm job's share), and how much of it is free now.
public struct MemoryLimit: Sendable, Equatable {
    /// The most this process's cgroup, or else the machine, can hold (bytes), swap included.
    public var total: Double
    /// What is available now (`MemAvailable` plus free swap, within the cgroup's limit less its use).
    public var available: Double
    /// Where `total` comes from, for messages: "this machine's memory and swap", or the cgroup's limit.
    public var source: String

    public init(total: Double, available: Double, source: String) {
        self.total = total
        self.available = available
        self.source = source
    }

    /// This process's limits, or nil where /proc/meminfo cannot be read.
    public static func current() -> MemoryLimit? {
        guard let meminfo = ControlGroups.text(of: "/proc/meminfo") else { return nil }
        func field(_ name: String) -> Double? {
            guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
                  let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return nil }
            return kilobytes * 1024
        }
        guard let memory = field("MemTotal") else { return nil }
        var limit = MemoryLimit(total: memory + (field("SwapTotal") ?? 0),
                                available: (field("MemAvailable") ?? memory) + (field("SwapFree") ?? 0),
                                source: "this machine's memory and swap")
        if let cgroup = cgroupLimit(swapTotal: field("SwapTotal") ?? 0), cgroup.bytes < limit.total {
            limit = MemoryLimit(total: cgroup.bytes, available: min(limit.available, max(0, cgroup.bytes - cgroup.used)),
                                source: "the memory limit of cgroup \(cgroup.directory)")
        }
        return limit
    }

    /// The tightest memory limit on this process's cgroup or its ancestors (a Slurm job's limit sits on `job_N`, its
    /// tasks in cgroups below it with none of their own): bytes (with the swap cgroup v2 lets it use: `memory.swap.max`,
    /// where "max" or no file means the machine's `swapTotal`), what that cgroup uses now, and its directory; nil
    /// without a limit.
    private static func cgroupLimit(swapTotal: Double) -> (bytes: Double, used: Double, directory: String)? {
        let read = ControlGroups.text(of:)
        var tightest: (bytes: Double, used: Double, directory: String)?
        func consider(_ bytes: Double, _ used: Double, _ directory: String) {
            if bytes < tightest?.bytes ?? .infinity { tightest = (bytes, used, directory) }
        }
        for membership in ControlGroups.memberships() {
            // The cgroup and its ancestors up to the hierarchy's root (where a container may see its own).
            let components = membership.path.split(separator: "/")
            let paths = (0...components.count).map { "/" + components.prefix($0).joined(separator: "/") }
            if membership.isUnified {
                for path in paths {
                    let directory = "/sys/fs/cgroup" + (path == "/" ? "" : path)
                    guard let text = read(directory + "/memory.max"), let bytes = Double(text) else { continue }
                    let swap = read(directory + "/memory.swap.max").flatMap(Double.init).map { min($0, swapTotal) } ?? swapTotal
                    consider(bytes + swap, read(directory + "/memory.current").flatMap(Double.init) ?? 0, directory)
                }
            } else if membership.controllers.contains("memory") {
                for path in paths {
                    let directory = "/sys/fs/cgroup/memory" + (path == "/" ? "" : path)
                    // v1 writes a huge number (a page-rounded 2⁶³) for "no limit".
                    guard let text = read(directory + "/memory.limit_in_bytes"), let bytes = Double(text), bytes < 1e18 else { continue }
                    consider(bytes, read(directory + "/memory.usage_in_bytes").flatMap(Double.init) ?? 0, directory)
                }
            }
        }
        return tightest
    }
}
