import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore

struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a Keel command on several processes through mpirun, or srun inside a Slurm allocation.",
        discussion: """
            Example: keel launch --nproc 2 -- train --config configs/demo.toml. Runs mpirun with this keel \
            binary, the options OpenMPI needs here (--allow-run-as-root as root, --oversubscribe when there are \
            more processes than cores on one machine, otherwise each rank bound to its share of the cores \
            rather than to one) and this environment's KEEL_*, OPENBLAS_* and OMP_* \
            variables; prints the mpirun command first. Inside a Slurm allocation (SLURM_JOB_ID set) it runs \
            srun instead (--mpi=pmix, --kill-on-bad-exit=1; the allocation decides the machines); --launcher \
            chooses. With --max-restarts N it supervises a `train … --out DIR` job: when the job \
            fails (a rank died, or hung past distributed.timeout_s), it starts it again with --resume from the \
            newest valid checkpoint or in-memory snapshot (with --resume-if-any where this machine sees neither: \
            the ranks then look on their own machines), up to N times in a row without a new step (each further \
            one after a longer wait), saying what failed, where it resumed and \
            how many steps were lost. A training job (train, dpo, reward train, grpo) runs under that supervisor \
            without --max-restarts too: \
            SIGTERM, SIGUSR1 or Ctrl-C to it, or a stop signal to the job's ranks (Slurm's --signal), stop the job \
            cleanly: a checkpoint, no restart, exit status 75.
            """)

    @Option(help: "Number of processes.")
    var nproc: Int

    @Option(help: ArgumentHelp("Machines and process slots, as mpirun's --host takes them.", valueName: "host:slots,…"))
    var hosts: String?

    @Option(help: "The mpirun program.")
    var mpirun = "mpirun"

    @Option(help: "mpirun, srun, or auto: srun inside a Slurm allocation, mpirun otherwise.")
    var launcher = "auto"

    @Flag(help: "Print the mpirun (or srun) command without running it.")
    var dryRun = false

    @Option(help: "Restart a failed `train` job (with --resume from its newest checkpoint, or --resume-if-any where there is none here) up to this many times in a row without a new step.")
    var maxRestarts = 0

    @Argument(parsing: .postTerminator, help: "The keel command each process runs, after --.")
    var command: [String] = []

    func validate() throws {
        guard nproc >= 1 else { throw ValidationError("--nproc must be at least 1") }
        guard !command.isEmpty else { throw ValidationError("give the command after --, e.g. keel launch --nproc 2 -- train --config FILE") }
        guard maxRestarts >= 0 else { throw ValidationError("--max-restarts must not be negative") }
        guard ["auto", "mpirun", "srun"].contains(launcher) else {
            throw ValidationError("--launcher must be auto, mpirun or srun (got \(launcher))")
        }
        if usesSrun && hosts != nil {
            throw ValidationError("--hosts is mpirun's; under Slurm the allocation decides the machines")
        }
        if maxRestarts > 0 && (command.first != "train" || runDirectory == nil) {
            throw ValidationError("--max-restarts supervises a training run: give `-- train … --out DIR`, so that it can resume from DIR's checkpoints")
        }
        guard command.first != "launch" else { throw ValidationError("give the command each process runs after --, not another launch") }
        // Parsed here once, as each process will parse it: a misspelt option is one error before any process starts,
        // not one from every rank after mpirun started them all.
        do {
            _ = try Keel.parseAsRoot(command)
        } catch where Keel.exitCode(for: error) != .success {
            throw ValidationError("the command after --: \(Keel.message(for: error))")
        }
    }

    /// The run directory of a training command — `train`, `dpo`, `reward train`, `grpo`, which stop cleanly on a
    /// signal — where the supervisor keeps its marker: `--out DIR` (`-o DIR`, `--out=DIR`), else for `train` the one it
    /// makes of its `--config` (runs/<config name>).
    private var runDirectory: URL? {
        let fineTuning = ["dpo", "grpo"].contains(command.first) || command.prefix(2) == ["reward", "train"]
        guard command.first == "train" || fineTuning else { return nil }
        func value(_ names: [String]) -> String? {
            for (index, argument) in command.enumerated() {
                if let name = names.first(where: { argument.hasPrefix($0 + "=") }) { return String(argument.dropFirst(name.count + 1)) }
                if names.contains(argument) && index + 1 < command.count { return command[index + 1] }
            }
            return nil
        }
        let out = value(["--out", "-o"])
        return (fineTuning ? out : Train.runDirectory(out: out, config: value(["--config", "-c"]))).map { URL(fileURLWithPath: $0) }
    }

    /// Whether the job starts through Slurm's srun.
    private var usesSrun: Bool {
        launcher == "srun" || (launcher == "auto" && ProcessInfo.processInfo.environment["SLURM_JOB_ID"] != nil)
    }

    func run() throws {
        // Each rank chooses OpenBLAS's kernels for its own machine (local ranks from this machine's cache).
        BLASEnvironment.forgetChoice()
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var environment = ProcessInfo.processInfo.environment
        if let directory = runDirectory {
            // Where a rank says that a restart would not mend the job's error, or that it stopped with a checkpoint
            // (srun may pass neither status, 3 nor 75, on).
            let marker = JobSupervisor.noRestartFile(in: directory).path
            setenv(DistributedRun.noRestartVariable, marker, 1)
            environment[DistributedRun.noRestartVariable] = marker
        }
        let arguments = usesSrun ? srunArguments(executable: executable)
            : mpirunArguments(executable: executable, environment: environment)
        StandardStreams.error("launch: " + arguments.joined(separator: " ") + "\n")
        if dryRun { return }
        // A training job (fine-tuning too) runs under a supervisor even without restarts, which passes SIGTERM and Ctrl-C on as
        // SIGUSR1: OpenMPI's mpirun answers them itself by killing the ranks (SIGTERM, then SIGKILL a second later),
        // before a step of a large model ends and its checkpoint is written.
        guard let directory = runDirectory else {
            let cArguments = arguments.map { strdup($0) } + [nil]
            execvp(arguments[0], cArguments)
            throw ValidationError("cannot run \(arguments[0]) (\(String(cString: strerror(errno))))" + (usesSrun ? "" : "; install OpenMPI (scripts/setup.sh does) or pass --mpirun PATH"))
        }
        try JobSupervisor(arguments: arguments, runDirectory: directory, maxRestarts: maxRestarts).run()
    }

    /// srun inside the allocation: the ranks reach each other through PMIx, and one that dies takes the others
    /// down (so a supervisor sees the job fail). srun passes the whole environment and forwards SIGUSR1 and
    /// SIGTERM to the ranks.
    func srunArguments(executable: String) -> [String] {
        ["srun", "--ntasks", String(nproc), "--mpi=pmix", "--kill-on-bad-exit=1", executable] + command
    }

    func mpirunArguments(executable: String, environment: [String: String]) -> [String] {
        var arguments = [mpirun, "-np", String(nproc)]
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        let cores = Self.physicalCores()
        if let hosts {
            // Other machines' cores are not known here: OpenMPI's default would bind each rank to one core (two ranks)
            // or a socket (more), whose threads Keel would then oversubscribe. Unbound, each rank divides its machine's
            // cores among the job's ranks there itself (`ThreadPool.defaultThreadCount`).
            arguments += ["--host", hosts, "--bind-to", "none"]
        } else if nproc > cores {
            arguments.append("--oversubscribe")
        } else {
            // OpenMPI binds each rank to one core by default: its compute threads, its gradient communication
            // thread and its checkpoint writer would all share that core, with the others idle. Each rank gets
            // its share of the machine's cores instead.
            arguments += ["--map-by", "slot:PE=\(cores / nproc)"]
        }
        for name in environment.keys.sorted() where ["KEEL_", "OPENBLAS_", "OMP_"].contains(where: { name.hasPrefix($0) }) {
            arguments += ["-x", name]
        }
        return arguments + [executable] + command
    }

    /// The physical cores this process may run on: OpenMPI's slots and `PE` count cores, not hardware threads
    /// (without --use-hwthread-cpus), so on a machine with two threads a core `PE = threads / nproc` would ask for twice
    /// the cores there are. Counted as the distinct sets of thread siblings among the processors this process is
    /// allowed (`ProcessorAffinity`: a container's or a job's share, not the whole machine); the processor count
    /// where /sys does not say.
    static func physicalCores() -> Int {
        let allowed = ProcessorAffinity.allowedProcessors(), available = ProcessorAffinity.usableProcessorCount(allowing: allowed)
        var cores = Set<String>()
        for cpu in allowed {
            guard let siblings = try? String(contentsOfFile: "/sys/devices/system/cpu/cpu\(cpu)/topology/thread_siblings_list",
                                             encoding: .utf8) else { return available }
            cores.insert(siblings.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return cores.isEmpty ? available : min(cores.count, available)
    }
}
