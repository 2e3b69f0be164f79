import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelTrain

/// `keel launch --max-restarts N`: runs a training job through mpirun (or srun, inside a Slurm allocation) and,
/// when it fails — a rank died (mpirun or srun then stops the others) or hung past the timeout (the ranks then stop themselves) — starts it again with
/// `--resume`, so it continues from the newest valid checkpoint — an in-memory snapshot when the job takes them
/// (`checkpoint.snapshot_every`) and one survived — up to N times. It says what failed, where the job
/// resumed, how many steps were lost and how long recovery took (from the failure to the first new step). Where
/// it sees no checkpoint (none on disk, no snapshot on this machine, which may run no rank) it restarts the job
/// with `--resume-if-any`, so that the ranks look for snapshots on their own machines.
///
/// A stop signal to the supervisor (SIGTERM, SIGUSR1, Ctrl-C) is passed to the launcher as SIGUSR1, which forwards
/// it to every rank: they checkpoint and exit cleanly, and the job is not restarted. Every `keel launch` of a training
/// job runs under one, with `maxRestarts` 0 when none were asked for, for that alone.
struct JobSupervisor {
    /// The launcher's command line (mpirun or srun first).
    let arguments: [String]
    let runDirectory: URL
    let maxRestarts: Int

    /// Where the job's ranks say that a restart would not mend its error (`DistributedRun.noRestartVariable`).
    static func noRestartFile(in runDirectory: URL) -> URL { runDirectory.appendingPathComponent(".no-restart") }

    func run() throws {
        StopSignals.install()
        var command = arguments
        var recovery: Recovery?
        let marker = Self.noRestartFile(in: runDirectory)
        var failure: Int32 = 0
        // Restarts in a row that trained no step past the one their predecessor failed after: a month-long run meets
        // many unrelated failures, which should not use its restarts up, while a failure that recurs at the same place
        // (a bad node, memory that runs out at a step) should not be retried at once, forever.
        var attempt = 0, fruitless = 0, failedAfter = -1
        while true {
            if attempt > 0, let signal = StopSignals.received {
                // Between a failure and its restart: no job to pass the signal to.
                log("stopped by \(StopSignals.name(of: signal)) before restart \(attempt); not restarting")
                throw ExitCode(failure)
            }
            try? FileManager.default.removeItem(at: marker)
            let outcome = try runJob(command, recovery: recovery)
            failure = outcome.status
            if outcome.status == 0 {
                if attempt > 0 { log("finished after \(attempt) restart\(attempt == 1 ? "" : "s")") }
                return
            }
            let recorded = try? String(contentsOf: marker, encoding: .utf8)
            let stopped = outcome.status == DistributedRun.stoppedStatus || recorded?.hasPrefix(DistributedRun.stopRecord) == true
            // A stop before the first step (a fine-tuning run's reference pass) saved nothing.
            let checkpointed = stopped && recorded?.hasSuffix(DistributedRun.stoppedBeforeFirstStep + "\n") != true
            let saved = checkpointed ? "with a checkpoint" : "before its first step: nothing was saved"
            // Stopped by a signal to this supervisor, or not to be restarted at all: the job's status is the supervisor's
            // (its ranks said what went wrong) — 75 when the ranks stopped with a checkpoint, which the launcher's own
            // status may hide (srun reports the ranks it killed once the first exited).
            if StopSignals.received != nil || maxRestarts == 0 {
                try? FileManager.default.removeItem(at: marker)
                if let signal = StopSignals.received {
                    log("stopped by \(StopSignals.name(of: signal))\(stopped ? ", \(saved)" : "")\(maxRestarts > 0 ? "; not restarting" : "")")
                }
                throw ExitCode(stopped ? DistributedRun.stoppedStatus : outcome.status)
            }
            if stopped {
                // A stop signal reached the ranks and not this supervisor (Slurm's --signal, a scheduler's pre-emption).
                try? FileManager.default.removeItem(at: marker)
                log("the job stopped on a stop signal to its ranks, \(saved) (exit status \(outcome.status)); not restarting")
                throw ExitCode(DistributedRun.stoppedStatus)
            }
            if outcome.status == DistributedRun.recurringFailureStatus || FileManager.default.fileExists(atPath: marker.path) {
                try? FileManager.default.removeItem(at: marker)
                log("the job failed (\(outcome.description)) with an error that a restart would not mend (its message is above: training diverged, --out held another run, or the run's data or settings changed); not restarting")
                throw ExitCode(DistributedRun.recurringFailureStatus)
            }
            let failed = Date(), reached = lastLoggedStep()
            fruitless = reached > failedAfter ? 1 : fruitless + 1
            failedAfter = max(failedAfter, reached)
            guard fruitless <= maxRestarts else {
                log("the job failed (\(outcome.description)); giving up after \(maxRestarts) restart\(maxRestarts == 1 ? "" : "s") in a row that trained no further")
                throw ExitCode(outcome.status)
            }
            attempt += 1
            if let (checkpoint, inMemory) = newestCheckpoint(), let step = CheckpointStore.step(of: checkpoint) {
                let source = inMemory ? "the in-memory snapshot " : ""
                log("the job failed (\(outcome.description)) after step \(reached); restart \(fruitless) of \(maxRestarts) "
                    + "from \(source)\(checkpoint.path): \(max(0, reached - step)) step\(reached - step == 1 ? "" : "s") lost")
                // Strictly from a checkpoint on disk; a snapshot this machine sees may not assemble on the others
                // (its partner machine lost too), and the job then looks for one itself as below.
                command = resuming(arguments, ifAny: inMemory)
            } else {
                // This machine may run no rank of the job (a login node), so it does not see the snapshots on the
                // job's machines: the job looks for them itself, and starts from the beginning only without any.
                log("the job failed (\(outcome.description)) after step \(reached) with no checkpoint on disk or on this machine; "
                    + "restart \(fruitless) of \(maxRestarts) from an in-memory snapshot on the job's machines if one survived, else from the beginning")
                command = resuming(arguments, ifAny: true)
            }
            recovery = Recovery(failed: failed, staleMetrics: metricsFile())
            // A failure again without progress waits 2, 4, 8 … up to 60 s: time for a node to be replaced, a
            // filesystem to come back.
            if fruitless > 1 {
                let seconds = min(60, 1 << min(fruitless - 1, 6))
                log("waiting \(seconds) s first: \(fruitless) failures in a row without a new step")
                let until = Date().addingTimeInterval(Double(seconds))
                while Date() < until && StopSignals.received == nil { usleep(100_000) }
            }
        }
    }

    /// A restart under way: when the job failed, and the metrics file it left. The restarted job replaces the file
    /// with the records up to the step it resumed at (none from the beginning), so a step logged after those is a
    /// new one; which step it resumed at, the job decides (its ranks may find a newer snapshot than this machine sees).
    private struct Recovery {
        let failed: Date
        let staleMetrics: Int?
    }

    /// Runs the launcher once and waits for it, passing stop signals on and reporting when a restarted job has
    /// trained its first new step.
    private func runJob(_ command: [String], recovery: Recovery?) throws -> (status: Int32, description: String) {
        guard BoundToParent.canRun(command[0]) else {
            throw ValidationError("cannot run \(command[0]) (not found)"
                                  + (command[0] == "srun" ? "" : "; install OpenMPI (scripts/setup.sh does) or pass --mpirun PATH"))
        }
        // The launcher ends when this supervisor does, however it ends (`BoundToParent`). Foundation starts it in a
        // process group of its own (POSIX_SPAWN_SETPGROUP), so a terminal's Ctrl-C reaches this supervisor only, which
        // passes it on as SIGUSR1: mpirun would answer a SIGINT of its own by killing the ranks a second later.
        // (Ctrl-Z, likewise, stops the supervisor and not the job.)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["exec-bound-to-parent", String(getpid()), "--"] + command
        try process.run()
        var forwarded = false, recovered = recovery == nil, resumedAt: Int?
        while process.isRunning {
            if !forwarded, StopSignals.received != nil {
                kill(process.processIdentifier, SIGUSR1)
                forwarded = true
            }
            if !recovered, let recovery, metricsFile() != recovery.staleMetrics {
                // The new file's last step when first seen is the one the job resumed at (a step of this job takes
                // longer than this loop's tenth of a second between looks).
                let logged = lastLoggedStep()
                if resumedAt == nil { resumedAt = logged }
                if logged > resumedAt! {
                    log(String(format: "recovered: step %d trained %.1f s after the failure", resumedAt! + 1,
                               Date().timeIntervalSince(recovery.failed)))
                    recovered = true
                }
            }
            usleep(100_000)
        }
        let status = process.terminationStatus
        return process.terminationReason == .uncaughtSignal
            ? (128 + status, "\(command[0]) killed by signal \(status)") : (status, "exit status \(status)")
    }

    /// What the restarted job will resume from, as far as this machine can tell: the newest checkpoint on disk
    /// with a manifest, or this machine's newest in-memory snapshot when the job takes them (its config, the resolved
    /// config.toml the job wrote, says) and it is newer. Files are not hashed here — a large model's checkpoint is
    /// hundreds of gigabytes, which one process would read for minutes before every restart, and the ranks verify
    /// their shares anyway, falling back to an older checkpoint; the job says where it actually resumed from.
    private func newestCheckpoint() -> (URL, inMemory: Bool)? {
        let disk = CheckpointStore.list(runDirectory.appendingPathComponent("checkpoints")).first(where: CheckpointStore.hasManifest)
        let config = try? TrainConfig.load(path: runDirectory.appendingPathComponent("config.toml").path, overrides: [])
        // Snapshots of another run of this directory (its identity differs) are removed by the job, not resumed.
        let snapshot = config.flatMap { Trainer.snapshotRoot(config: $0, output: runDirectory) }
            .flatMap { root in RunIdentity.read(root).flatMap { $0 == RunIdentity.read(runDirectory) ? root : nil } }
            .flatMap { root in CheckpointStore.list(root).first { (try? CheckpointStore.readManifest($0)) != nil } }
        if let snapshot, disk.map({ CheckpointStore.step(of: snapshot)! > CheckpointStore.step(of: $0)! }) ?? true { return (snapshot, true) }
        return disk.map { ($0, false) }
    }

    /// The train command with `--resume` (once), or with `ifAny` `--resume-if-any`; a command given with `--resume`
    /// keeps it (its run had a checkpoint before this job started).
    private func resuming(_ command: [String], ifAny: Bool = false) -> [String] {
        if command.contains("--resume") { return command }
        return command.filter { $0 != "--resume-if-any" } + [ifAny ? "--resume-if-any" : "--resume"]
    }

    /// The file number of metrics.jsonl, which changes when a run replaces it.
    private func metricsFile() -> Int? {
        let attributes = try? FileManager.default.attributesOfItem(atPath: runDirectory.appendingPathComponent("metrics.jsonl").path)
        return (attributes?[.systemFileNumber] as? NSNumber)?.intValue
    }

    /// The last step the job logged in metrics.jsonl (0 when none), read from the end: a month's file is hundreds of
    /// megabytes, and this is asked ten times a second while a job recovers.
    private func lastLoggedStep() -> Int {
        guard let file = FileHandle(forReadingAtPath: runDirectory.appendingPathComponent("metrics.jsonl").path),
              let size = try? file.seekToEnd() else { return 0 }
        defer { try? file.close() }
        var window: UInt64 = 1 << 16
        while true {
            let start = size - min(size, window)
            guard (try? file.seek(toOffset: start)) != nil, let data = try? file.readToEnd() else { return 0 }
            // Whole lines only: the first may be cut by the window's start.
            let lines = data.split(separator: UInt8(ascii: "\n")).dropFirst(start > 0 ? 1 : 0)
            for line in lines.reversed() {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], object["loss"] != nil,
                      let step = object["step"] as? Int else { continue }
                return step
            }
            if start == 0 { return 0 }
            window *= 4
        }
    }

    private func log(_ message: String) {
        StandardStreams.error("launch: \(message)\n")
    }
}
