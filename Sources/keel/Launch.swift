import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore

struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a Keel command on several processes through mpirun.",
        discussion: """
            Example: keel launch --nproc 2 -- train --config configs/demo.toml. Runs mpirun with this keel \
            binary, the options OpenMPI needs here (--allow-run-as-root as root, --oversubscribe when there are \
            more processes than cores on one machine, otherwise each rank bound to its share of the cores \
            rather than to one) and this environment's KEEL_*, OPENBLAS_* and OMP_* \
            variables; prints the mpirun command first. On Slurm, run `srun keel train …` instead \
            (docs/operations.md). With --max-restarts N it supervises a `train … --out DIR` job: when the job \
            fails (a rank died, or hung past distributed.timeout_s), it starts it again with --resume from the \
            newest valid checkpoint, up to N times, saying what failed, where it resumed and how many steps \
            were lost. SIGTERM, SIGUSR1 or Ctrl-C to it stop the job cleanly (a checkpoint, no restart).
            """)

    @Option(help: "Number of processes.")
    var nproc: Int

    @Option(help: ArgumentHelp("Machines and process slots, as mpirun's --host takes them.", valueName: "host:slots,…"))
    var hosts: String?

    @Option(help: "The mpirun program.")
    var mpirun = "mpirun"

    @Flag(help: "Print the mpirun command without running it.")
    var dryRun = false

    @Option(help: "Restart a failed `train` job (with --resume from its newest checkpoint) up to this many times.")
    var maxRestarts = 0

    @Argument(parsing: .postTerminator, help: "The keel command each process runs, after --.")
    var command: [String] = []

    func validate() throws {
        guard nproc >= 1 else { throw ValidationError("--nproc must be at least 1") }
        guard !command.isEmpty else { throw ValidationError("give the command after --, e.g. keel launch --nproc 2 -- train --config FILE") }
        guard maxRestarts >= 0 else { throw ValidationError("--max-restarts must not be negative") }
        if maxRestarts > 0 && (command.first != "train" || runDirectory == nil) {
            throw ValidationError("--max-restarts supervises a training run: give `-- train … --out DIR`, so that it can resume from DIR's checkpoints")
        }
    }

    /// The run directory of a `train` command (`--out DIR`, `-o DIR` or `--out=DIR`).
    private var runDirectory: URL? {
        for (index, argument) in command.enumerated() {
            if argument.hasPrefix("--out=") { return URL(fileURLWithPath: String(argument.dropFirst("--out=".count))) }
            if (argument == "--out" || argument == "-o") && index + 1 < command.count { return URL(fileURLWithPath: command[index + 1]) }
        }
        return nil
    }

    func run() throws {
        let arguments = mpirunArguments(executable: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
                                        environment: ProcessInfo.processInfo.environment)
        FileHandle.standardError.write(Data(("launch: " + arguments.joined(separator: " ") + "\n").utf8))
        if dryRun { return }
        guard maxRestarts > 0, let directory = runDirectory else {
            let cArguments = arguments.map { strdup($0) } + [nil]
            execvp(mpirun, cArguments)
            throw ValidationError("cannot run \(mpirun) (\(String(cString: strerror(errno)))); install OpenMPI (scripts/setup.sh does) or pass --mpirun PATH")
        }
        try JobSupervisor(arguments: arguments, runDirectory: directory, maxRestarts: maxRestarts).run()
    }

    func mpirunArguments(executable: String, environment: [String: String]) -> [String] {
        var arguments = [mpirun, "-np", String(nproc)]
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let hosts {
            arguments += ["--host", hosts]
        } else if nproc > cores {
            arguments.append("--oversubscribe")
        } else {
            // OpenMPI binds each rank to one core by default: its compute threads, its gradient communication
            // thread and its checkpoint writer would all share that core, with the others idle. Each rank gets
            // its share of the machine's cores instead.
            arguments += ["--map-by", "slot:PE=\(cores / nproc)"]
        }
        for name in environment.keys.sorted()
        where ["KEEL_", "OPENBLAS_", "OMP_"].contains(where: { name.hasPrefix($0) }) && name != "KEEL_NO_REEXEC" {
            arguments += ["-x", name]
        }
        return arguments + [executable] + command
    }
}
