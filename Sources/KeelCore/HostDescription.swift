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
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let lines = cpuinfo.split(separator: "\n")
        func field(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name) }.flatMap { $0.split(separator: ":", maxSplits: 1).last }
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        let interesting = ["avx2", "avx512f", "avx512_bf16", "avx_vnni", "avx512_vnni", "amx_tile", "amx_bf16"]
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let kilobytes = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Double($0) } ?? 0
        return HostDescription(cpu: field("model name") ?? "unknown", instructionSets: interesting.filter(flags.contains),
                               logicalCores: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: kilobytes * 1024,
                               processes: processes, threadsPerProcess: threads)
    }

    /// As JSON, keys sorted.
    public var json: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return (try? encoder.encode(self)) ?? Data()
    }
}
