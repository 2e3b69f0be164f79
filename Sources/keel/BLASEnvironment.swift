import Foundation
import KeelCore
import KeelKernels

/// OpenBLAS's kernel set on AVX-512 CPUs. Debian's OpenBLAS does not recognise recent AVX-512 CPUs (Zen 4/5) and
/// falls back to its Haswell (AVX2) kernels: about a third of the SkylakeX kernels' speed on Zen 5, yet the faster
/// of the two on Zen 4 (docs/platform.md). It reads `OPENBLAS_CORETYPE` only when the library loads, before `main`,
/// so on an AVX-512 CPU Keel times both kernel sets in processes of its own (once per machine: `OpenBLASKernels`
/// caches the rates), sets the variable to the faster (SkylakeX unless it is more than 3% slower) and re-executes
/// itself once.
///
/// Keel chooses when the variable is unset or names an AVX2 fallback (Haswell, Zen); any other value is the user's
/// choice and is kept, and `KEEL_NO_REEXEC=1` keeps the environment exactly as it is.
enum BLASEnvironment {
    static let upgradable: Set<String> = ["", "haswell", "zen"]
    /// This program, for the probes and the re-execution.
    static let executable = "/proc/self/exe"
    /// How long a probe may take (it times well under a second of products) before it is stopped and not counted.
    static let probeDeadline = 60.0

    static func selectCoreType() {
        let environment = ProcessInfo.processInfo.environment
        if environment[OpenBLASKernels.probeVariable] == "1" { runProbe() }
        let current = environment["OPENBLAS_CORETYPE"] ?? ""
        guard upgradable.contains(current.lowercased()), environment["KEEL_NO_REEXEC"] == nil,
              HostDescription.current(processes: 1, threads: 1).instructionSets.contains("avx512f"),
              let (kernels, reason) = OpenBLASKernels.choose(probe: probe)
        else { return }
        setenv("OPENBLAS_CORETYPE", kernels, 1)
        setenv(OpenBLASKernels.reasonVariable, reason, 1)
        // Guards against a loop should the new process still see the old value.
        setenv("KEEL_NO_REEXEC", "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv(executable, arguments)
        // execv returned: carry on with the library's own choice, in an environment as it was (processes this one
        // starts load what it loaded, and nothing describes a choice that did not happen).
        forgetChoice()
        if !current.isEmpty { setenv("OPENBLAS_CORETYPE", current, 1) }
        warn("could not re-execute with OpenBLAS's \(kernels) kernels (\(String(cString: strerror(errno)))); OpenBLAS's own choice runs")
    }

    /// Unsets what `selectCoreType` set when it chose OpenBLAS's kernels for this machine (nothing when it did not
    /// choose): for `keel launch`, whose ranks may run on other machines (srun passes the whole environment) and
    /// each choose their own, and for an `execv` that failed.
    static func forgetChoice() {
        guard ProcessInfo.processInfo.environment[OpenBLASKernels.reasonVariable] != nil else { return }
        for name in ["OPENBLAS_CORETYPE", "KEEL_NO_REEXEC", OpenBLASKernels.reasonVariable] { unsetenv(name) }
    }

    /// The calibration rate of OpenBLAS with `kernels`, measured by this program in a process of its own; nil, with a
    /// warning, when that process fails, is killed, takes longer than `probeDeadline` or prints no rate.
    private static func probe(_ kernels: String) -> Double? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = kernels
        environment["KEEL_NO_REEXEC"] = "1"
        environment[OpenBLASKernels.probeVariable] = "1"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            warn("could not time OpenBLAS's \(kernels) kernels: \(error)")
            return nil
        }
        if finished.wait(timeout: .now() + probeDeadline) == .timedOut {
            process.terminate()
            if finished.wait(timeout: .now() + 5) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                finished.wait()
            }
            warn("could not time OpenBLAS's \(kernels) kernels: the probe took longer than \(Int(probeDeadline)) s and was stopped")
            return nil
        }
        // The probe has exited: its one line is in the pipe.
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if process.terminationReason == .uncaughtSignal {
            warn("could not time OpenBLAS's \(kernels) kernels: the probe was killed by signal \(process.terminationStatus)")
            return nil
        }
        guard process.terminationStatus == 0, let rate = Double(text), rate > 0 else {
            warn("could not time OpenBLAS's \(kernels) kernels: the probe exited with status \(process.terminationStatus)"
                 + (process.terminationStatus == 0 ? " but printed no rate ('\(text.prefix(80))')" : ""))
            return nil
        }
        return rate
    }

    /// In a probe started by `probe`: prints the rate and exits.
    private static func runProbe() -> Never {
        do {
            print(String(format: "%.3f", try OpenBLASKernels.probeRate()))
            exit(0)
        } catch {
            warn("\(error)")
            exit(1)
        }
    }
}
