import Foundation

/// This process's cgroups, as `/proc/self/cgroup` lists them, where the limits of a container or a Slurm job are
/// read (`ProcessorAffinity`'s CPU quota, `MemoryLimit`).
enum ControlGroups {
    /// One hierarchy the process belongs to: cgroup v2's unified one ("0::/path"), or a v1 hierarchy of
    /// `controllers` ("4:cpu,cpuacct:/path"); `path` is the process's cgroup in it.
    struct Membership {
        let isUnified: Bool
        let controllers: [Substring]
        let path: String
    }

    /// Every hierarchy the process belongs to (none where the file cannot be read).
    static func memberships() -> [Membership] {
        guard let text = self.text(of: "/proc/self/cgroup") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { return nil }
            return Membership(isUnified: fields[1].isEmpty, controllers: fields[1].split(separator: ","), path: String(fields[2]))
        }
    }

    /// The text of a kernel file (a cgroup's limit, /proc/meminfo) without its surrounding white space; nil where it
    /// cannot be read.
    static func text(of path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
