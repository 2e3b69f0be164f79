import Foundation

/// The machine a run ran on, as `hardware.json` in its directory records it: the CPU, its instruction sets that
/// matter to Keel's kernels, cores, memory, and the processes and threads the run used.
public struct HostDescription: Codable, Sendable, Equatable {
    public var cpu: String
    /// Of avx2, avx512f, avx512_bf16, avx_vnni, avx512_vnni, amx_tile, amx_bf16: those the CPU has.
    public var instructionSets: [String]
    public var logicalCores: Int
    public var memoryBytes: Double
    public var processes: Int
    public var threadsPerProcess: Int
    /// The fp32 matrix library and why it was chosen (KeelKernels' `BLASLibrary.description`); nil in runs
    /// recorded before Keel chose it.
    public var blas: String?
    /// The engine of the bf16 matrix products (KeelKernels' `BFloat16Engine`) in a run whose products are bf16; nil
    /// in fp32 runs.
    public var bf16Engine: String?

    enum CodingKeys: String, CodingKey {
        case cpu, instructionSets = "instruction_sets", logicalCores = "logical_cores", memoryBytes = "memory_bytes"
        case processes, threadsPerProcess = "threads_per_process", blas, bf16Engine = "bf16_engine"
    }

    /// This machine, for a run of `processes` processes of `threads` threads each.
    public static func current(processes: Int, threads: Int) -> HostDescription {
        let field = firstProcessor()
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        let interesting = ["avx2", "avx512f", "avx512_bf16", "avx_vnni", "avx512_vnni", "amx_tile", "amx_bf16"]
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let kilobytes = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Double($0) } ?? 0
        return HostDescription(cpu: field("model name") ?? "unknown", instructionSets: interesting.filter(flags.contains),
                               logicalCores: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: kilobytes * 1024,
                               processes: processes, threadsPerProcess: threads)
    }

    /// "cpu family 25, model 17, stepping 1": which generation the CPU is, where a virtual machine's model name is
    /// only "AMD EPYC" ("?" for a field /proc/cpuinfo lacks).
    public static var cpuSignature: String {
        let field = firstProcessor()
        return ["cpu family", "model", "stepping"].map { "\($0) \(field($0) ?? "?")" }.joined(separator: ", ")
    }

    /// The fields of /proc/cpuinfo's first processor: a value by its field's whole name ("model" is not "model
    /// name"), nil where absent or empty.
    private static func firstProcessor() -> (String) -> String? {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let lines = cpuinfo.split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }
        return { name in
            lines.lazy.map { $0.split(separator: ":", maxSplits: 1) }
                .first { $0.first?.trimmingCharacters(in: .whitespaces) == name }
                .flatMap { $0.dropFirst().first }.map { $0.trimmingCharacters(in: .whitespaces) }
                .flatMap { $0.isEmpty ? nil : $0 }
        }
    }

    /// As JSON, keys sorted.
    public var json: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return (try? encoder.encode(self)) ?? Data()
    }
}
