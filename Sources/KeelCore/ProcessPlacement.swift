import Foundation

/// Where this process sits in a job: its rank, the number of processes, and its index on its machine,
/// read from whichever launcher started it.
///
/// Read in order: OpenMPI's `mpirun` (`OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`,
/// `OMPI_COMM_WORLD_LOCAL_RANK`, `OMPI_COMM_WORLD_LOCAL_SIZE`), Slurm's `srun` (`SLURM_PROCID`, `SLURM_NTASKS`,
/// `SLURM_LOCALID`, and this node's entry of `SLURM_STEP_TASKS_PER_NODE` by `SLURM_NODEID`, else
/// `SLURM_NTASKS_PER_NODE`) — in a job step only (`SLURM_STEP_ID`, which srun sets: a batch script itself sees
/// `SLURM_PROCID=0` and the allocation's `SLURM_NTASKS`, and is one process) — then torchrun-style variables (`RANK`,
/// `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`). With none of them set, the process is alone — unless a launcher
/// Keel does not read (MPICH's or Intel MPI's `mpiexec`: `PMI_SIZE`; Flux: `FLUX_JOB_SIZE`) started several, which
/// is refused: each would train alone into the same run directory.
public struct ProcessPlacement: Equatable, Sendable {
    public var rank: Int
    public var worldSize: Int
    public var localRank: Int
    /// Processes on this machine, when the launcher says.
    public var localSize: Int?
    /// Which launcher's variables were read ("OpenMPI", "Slurm", "torchrun" or "none").
    public var launcher: String

    public init(rank: Int, worldSize: Int, localRank: Int, localSize: Int?, launcher: String) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.localSize = localSize
        self.launcher = launcher
    }

    /// A process started on its own.
    public static let single = ProcessPlacement(rank: 0, worldSize: 1, localRank: 0, localSize: 1, launcher: "none")

    /// Whether more than one process takes part.
    public var isDistributed: Bool { worldSize > 1 }

    private static let schemes: [(launcher: String, rank: String, size: String, localRank: String, localSize: String)] = [
        ("OpenMPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
        ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    ]

    /// The placement described by `environment`; throws naming the variable when a value is malformed.
    public static func discover(_ environment: [String: String]) throws -> ProcessPlacement {
        for scheme in schemes where environment[scheme.rank] != nil || environment[scheme.size] != nil {
            if scheme.launcher == "Slurm", environment["SLURM_STEP_ID"].flatMap({ Int($0) }) == nil { continue }
            func number(_ name: String, required: Bool) throws -> Int? {
                guard let text = environment[name] else {
                    if required { throw KeelError("launcher environment: \(name) is not set (\(scheme.launcher) variables are incomplete)") }
                    return nil
                }
                // Slurm writes e.g. "2(x3)" for a uniform count per node; the count is the part before "(".
                let leading = text.split(separator: "(").first.map(String.init) ?? text
                guard let value = Int(leading.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                    throw KeelError("launcher environment: \(name)=\(text) is not a non-negative integer")
                }
                return value
            }
            let rank = try number(scheme.rank, required: true)!
            let size = try number(scheme.size, required: true)!
            guard size >= 1, rank < size else {
                throw KeelError("launcher environment: \(scheme.rank)=\(rank) is not below \(scheme.size)=\(size)")
            }
            let localRank = try number(scheme.localRank, required: false) ?? 0
            let localSize = try scheme.launcher == "Slurm" ? slurmTasksOnThisNode(environment) ?? number(scheme.localSize, required: false)
                : number(scheme.localSize, required: false)
            return ProcessPlacement(rank: rank, worldSize: size, localRank: localRank, localSize: localSize,
                                    launcher: scheme.launcher)
        }
        for variable in ["PMI_SIZE", "FLUX_JOB_SIZE"] {
            if let size = environment[variable].flatMap({ Int($0) }), size > 1 {
                throw KeelError("launcher environment: \(variable)=\(size) says this process is one of \(size), started by a launcher "
                    + "Keel does not read (MPICH's or Intel MPI's mpiexec, Flux); start the job with OpenMPI's mpirun, srun, or torchrun-style variables")
            }
        }
        return .single
    }

    /// This node's tasks in the step: `SLURM_STEP_TASKS_PER_NODE` (or `SLURM_TASKS_PER_NODE`) lists the count of each
    /// node in order, runs of equal ones written "2(x3)" — "2(x3),1" is 2, 2, 2, 1 — and `SLURM_NODEID` picks this
    /// node's. Nil when either is missing or does not read so.
    static func slurmTasksOnThisNode(_ environment: [String: String]) -> Int? {
        guard let list = environment["SLURM_STEP_TASKS_PER_NODE"] ?? environment["SLURM_TASKS_PER_NODE"],
              let node = environment["SLURM_NODEID"].flatMap({ Int($0) }), node >= 0 else { return nil }
        var counts: [Int] = []
        for entry in list.split(separator: ",") {
            let parts = entry.split(separator: "(")
            guard let count = Int(parts[0]), count >= 0 else { return nil }
            var repeats = 1
            if parts.count == 2 {
                guard parts[1].hasPrefix("x"), parts[1].hasSuffix(")"), let times = Int(parts[1].dropFirst().dropLast()), times >= 1
                else { return nil }
                repeats = times
            } else if parts.count > 2 {
                return nil
            }
            counts += Array(repeating: count, count: repeats)
            if counts.count > node { return counts[node] }
        }
        return nil
    }
}
