import ArgumentParser
import Foundation

struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a Keel command on several processes through mpirun.",
        discussion: """
            Example: keel launch --nproc 2 -- train --config configs/demo.toml. Runs mpirun with this keel \
            binary, the options OpenMPI needs here (--allow-run-as-root as root, --oversubscribe when there are \
            more processes than cores on one machine) and this environment's KEEL_*, OPENBLAS_* and OMP_* \
            variables; prints the mpirun command first. On Slurm, run `srun keel train …` instead \
            (docs/operations.md).
            """)

    @Option(help: "Number of processes.")
    var nproc: Int

    @Option(help: ArgumentHelp("Machines and process slots, as mpirun's --host takes them.", valueName: "host:slots,…"))
    var hosts: String?

    @Option(help: "The mpirun program.")
    var mpirun = "mpirun"

    @Flag(help: "Print the mpirun command without running it.")
    var dryRun = false

    @Argument(parsing: .postTerminator, help: "The keel command each process runs, after --.")
    var command: [String] = []

    func validate() throws {
        guard nproc >= 1 else { throw ValidationError("--nproc must be at least 1") }
        guard !command.isEmpty else { throw ValidationError("give the command after --, e.g. keel launch --nproc 2 -- train --config FILE") }
    }

    func run() throws {
        let arguments = mpirunArguments(executable: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
                                        environment: ProcessInfo.processInfo.environment)
        FileHandle.standardError.write(Data(("launch: " + arguments.joined(separator: " ") + "\n").utf8))
        if dryRun { return }
        let cArguments = arguments.map { strdup($0) } + [nil]
        execvp(mpirun, cArguments)
        throw ValidationError("cannot run \(mpirun) (\(String(cString: strerror(errno)))); install OpenMPI (scripts/setup.sh does) or pass --mpirun PATH")
    }

    func mpirunArguments(executable: String, environment: [String: String]) -> [String] {
        var arguments = [mpirun, "-np", String(nproc)]
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        if let hosts {
            arguments += ["--host", hosts]
        } else if nproc > ProcessInfo.processInfo.activeProcessorCount {
            arguments.append("--oversubscribe")
        }
        for name in environment.keys.sorted()
        where ["KEEL_", "OPENBLAS_", "OMP_"].contains(where: { name.hasPrefix($0) }) && name != "KEEL_NO_REEXEC" {
            arguments += ["-x", name]
        }
        return arguments + [executable] + command
    }
}
