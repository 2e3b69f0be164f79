import Foundation

/// The processors this process may run on: its affinity mask (`taskset`, a launcher's binding, a container's or a
/// Slurm task's cpuset), and how many of them its CPU quota lets it use at once (a cgroup's `cpu.max`: `docker
/// --cpus=8`). Foundation's `activeProcessorCount` reads neither on Linux (it counts the whole machine, or a
/// cgroup v1 quota only).
public enum ProcessorAffinity {
    /// The ids of the logical processors in this process's affinity mask (`Cpus_allowed_list` of /proc/self/status,
    /// "0-3,8-11"; every processor where it cannot be read).
    public static func allowedProcessors() -> [Int] {
        let everyProcessor = Array(0..<ProcessInfo.processInfo.processorCount)
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return everyProcessor }
        var allowed: [Int] = []
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            guard let first = bounds.first, let last = bounds.last, first <= last, bounds.count <= 2 else { return everyProcessor }
            allowed += Array(first...last)
        }
        return allowed.isEmpty ? everyProcessor : allowed
    }

    /// How many processors this process can keep busy: those it may run on (`allowed`, read unless given), or fewer
    /// when a CPU quota allows less (rounded up: a quota of 2.5 processors still spreads over 3). At least 1.
    public static func usableProcessorCount(allowing processors: [Int] = allowedProcessors()) -> Int {
        let allowed = max(1, processors.count)
        guard let quota = cpuQuota() else { return allowed }
        return max(1, min(allowed, Int(quota.rounded(.up))))
    }

    /// Processors' worth of CPU time per second the process's cgroup allows, when it sets a limit: cgroup v2's
    /// `cpu.max` ("QUOTA PERIOD", or "max" for none), or v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none).
    static func cpuQuota() -> Double? {
        let read = ControlGroups.text(of:)
        for membership in ControlGroups.memberships() {
            let path = membership.path
            if membership.isUnified, let limit = read("/sys/fs/cgroup\(path)/cpu.max") ?? read("/sys/fs/cgroup/cpu.max") {
                let parts = limit.split(separator: " ")
                if parts.count == 2, let quota = Double(parts[0]), let period = Double(parts[1]), quota > 0, period > 0 {
                    return quota / period
                }
            } else if membership.controllers.contains("cpu") {
                // The process's own cgroup, or the root of the hierarchy where a container sees its cgroup mounted
                // there (Docker on cgroup v1 without a cgroup namespace names the host's path).
                for root in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"] {
                    for directory in [root + path, root] {
                        if let quota = read("\(directory)/cpu.cfs_quota_us").flatMap(Double.init),
                           let period = read("\(directory)/cpu.cfs_period_us").flatMap(Double.init), quota > 0, period > 0 {
                            return quota / period
                        }
                    }
                }
            }
        }
        return nil
    }
}
