import Foundation

/// Debian's OpenBLAS does not recognise recent AVX-512 CPUs (Zen 4/5) and falls back to its Haswell (AVX2)
/// kernels, at about a third of the speed (docs/platform.md). It reads `OPENBLAS_CORETYPE` only when the
/// library loads, before `main`, so on an AVX-512 CPU Keel sets it to SkylakeX and re-executes itself once.
///
/// An unset variable or the AVX2 fallback values are upgraded; any other value is the user's choice and is
/// kept, and `KEEL_NO_REEXEC=1` keeps the environment exactly as it is.
enum BLASEnvironment {
    static let upgradable: Set<String> = ["", "haswell", "zen"]

    static func selectCoreType() {
        let environment = ProcessInfo.processInfo.environment
        let current = environment["OPENBLAS_CORETYPE"] ?? ""
        guard upgradable.contains(current.lowercased()), environment["KEEL_NO_REEXEC"] == nil,
              let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              flags.split(separator: " ").contains("avx512f")
        else { return }
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
        // Guards against a loop should the new process still see the old value.
        setenv("KEEL_NO_REEXEC", "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // execv returned: carry on with the library's own choice.
    }
}
