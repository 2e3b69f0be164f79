import ArgumentParser
import CProcessControl
import Foundation

/// `keel exec-bound-to-parent PID -- COMMAND…` (not listed in the help): becomes COMMAND once the kernel has been asked
/// to send it SIGTERM when PID, its parent, ends. `keel launch --max-restarts` starts each mpirun or srun this way, so
/// that a supervisor that dies — kill -9, a lost terminal's SIGHUP, a second Ctrl-C — takes the job down with it
/// (mpirun and srun stop their ranks on SIGTERM) instead of leaving it running unsupervised, writing into the run
/// directory beside the job the user starts next.
struct BoundToParent: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec-bound-to-parent", shouldDisplay: false)

    @Argument(help: "The parent's process ID.")
    var parent: Int32

    @Argument(parsing: .postTerminator, help: "The command to become.")
    var command: [String] = []

    func run() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --") }
        guard keel_die_with_parent(SIGTERM, parent) == 0 else {
            throw ValidationError("process \(parent) is not this process's parent any more (it ended): not starting \(command[0])")
        }
        // This process chose OpenBLAS's kernels for this machine when it started; the job's ranks (srun passes them the
        // whole environment, on other machines too) choose their own, as `keel launch` leaves them to.
        BLASEnvironment.forgetChoice()
        let arguments = command.map { strdup($0) } + [nil]
        execvp(command[0], arguments)
        throw ValidationError("cannot run \(command[0]) (\(String(cString: strerror(errno))))")
    }

    /// Whether `name` is a program `execvp` would find: a path to an executable file, or one in a `PATH` directory.
    static func canRun(_ name: String) -> Bool {
        let manager = FileManager.default
        if name.contains("/") { return manager.isExecutableFile(atPath: name) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { manager.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}
