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
        guard let meminfo = read("/proc/meminfo") else { return nil }
        func field(_ name: String) -> Double? {
            guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
                  let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return nil }
            return kilobytes * 1024
        }
        guard let memory = field("MemTotal") else { return nil }
        var limit = MemoryLimit(total: memory + (field("SwapTotal") ?? 0),
                                available: (field("MemAvailable") ?? memory) + (field("SwapFree") ?? 0),
                                source: "this machine's memory and swap")
        if let (bytes, used, name) = cgroupLimit(), bytes < limit.total {
            limit = MemoryLimit(total: bytes, available: min(limit.available, max(0, bytes - used)), source: name)
        }
        return limit
    }

    /// The memory limit of this process's cgroup (swap included where v2 allows it), what the cgroup uses now, and
    /// where the limit was read; nil without one.
    private static func cgroupLimit() -> (Double, Double, String)? {
        guard let membership = read("/proc/self/cgroup") else { return nil }
        for line in membership.split(separator: "\n") {
            // "0::/path" (v2), "9:memory:/path" (v1); a container may see its own cgroup at the hierarchy's root.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            if fields[1].isEmpty {
                for directory in ["/sys/fs/cgroup" + path, "/sys/fs/cgroup"] {
                    guard let text = read(directory + "/memory.max"), let bytes = Double(text) else { continue }
                    let swap = read(directory + "/memory.swap.max").flatMap(Double.init) ?? 0
                    let used = read(directory + "/memory.current").flatMap(Double.init) ?? 0
                    return (bytes + swap, used, "the memory limit of cgroup \(directory) (memory.max)")
                }
            } else if fields[1].split(separator: ",").contains("memory") {
                for directory in ["/sys/fs/cgroup/memory" + path, "/sys/fs/cgroup/memory"] {
                    // v1 writes a huge number (a page-rounded 2⁶³) for "no limit".
                    guard let text = read(directory + "/memory.limit_in_bytes"), let bytes = Double(text), bytes < 1e18 else { continue }
                    let used = read(directory + "/memory.usage_in_bytes").flatMap(Double.init) ?? 0
                    return (bytes, used, "the memory limit of cgroup \(directory) (memory.limit_in_bytes)")
                }
            }
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
