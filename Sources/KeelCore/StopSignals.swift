#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Turns the signals that ask a job to end — SIGTERM (schedulers, `kill`), SIGUSR1 (Slurm's pre-emption warning,
/// `--signal=USR1@90`) and SIGINT (Ctrl-C) — into a request that training reads between steps, so it can finish
/// the step, write a checkpoint and exit cleanly. A second SIGINT ends the process at once (exit status 130):
/// every file Keel writes is published by an atomic rename, so nothing half-written becomes visible.
public enum StopSignals {
    /// The first stop signal received (0: none yet).
    private static let first = Atomic<Int32>(0)
    private static let interrupts = Atomic<Int32>(0)

    /// Installs the handlers (once per process; later calls do nothing more).
    public static func install() {
        for signalNumber in [SIGTERM, SIGUSR1, SIGINT] {
            signal(signalNumber) { received in
                // Only async-signal-safe work here: two atomic updates and, on a second Ctrl-C, _exit.
                _ = StopSignals.first.compareExchange(expected: 0, desired: received, ordering: .relaxed)
                if received == SIGINT, StopSignals.interrupts.add(1, ordering: .relaxed).newValue >= 2 { _exit(130) }
            }
        }
    }

    /// The signal that asked this process to stop, if one has.
    public static var received: Int32? {
        let value = first.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }

    /// The signal's name, e.g. "SIGTERM".
    public static func name(of signalNumber: Int32) -> String {
        switch signalNumber {
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        case SIGINT: "SIGINT"
        default: "signal \(signalNumber)"
        }
    }
}
