import ArgumentParser
import Foundation
import KeelCore
import KeelKernels
import KeelModel
import KeelTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time full training steps of standard model shapes on random tokens.",
        discussion: """
            Each preset runs warm-up steps, then timed steps of forward, cross-entropy, backward, clipping \
            and AdamW. Reported: ms/step (min/median/max), tokens/s, model GFLOP/s (6 × parameters × tokens + \
            12 × layers × T × width × tokens per step, counting only parameters that enter matrix products: \
            not GPT-2's position table nor Llama's input embedding), utilisation against an sgemm ceiling \
            measured first on this machine (the best of OpenBLAS's threaded sgemm and Keel's gemm on \
            1024×2304×768, 1024×768×3072, 1024×3072×768 and 2048³ products), and peak RSS. --profile adds where a step's time goes. \
            --precision bf16 runs the matrix products with bf16 operands (AMX, AVX512-BF16, AVX-512F, AVX2, or portable C) and fp32 accumulation, \
            and also reports the ceiling of those products on the same shapes. \
            scripts/bench/peer/run.sh runs the same presets beside PyTorch.
            """)

    @Option(help: "Preset(s): \(BenchmarkPreset.all.map(\.name).joined(separator: ", ")), or all.")
    var preset: [String] = ["all"]

    @Option(help: "Timed steps.")
    var steps = 10

    @Option(help: "Untimed warm-up steps.")
    var warmup = 2

    @Flag(help: "Print the time per kind of work (forward and backward), with GFLOP/s or GB/s.")
    var profile = false

    @Option(help: "Operand format of the matrix products: fp32, or bf16 (AMX / AVX512-BF16 / AVX-512F / AVX2 / portable C, fp32 accumulation).")
    var precision: MatrixPrecision = .float32

    @Flag(help: "Print one JSON object per preset instead of a table.")
    var json = false

    @Flag(help: "Only measure this machine as keel plan's 'this-cpu' device: Keel's gemm rate with this process's threads, and the memory bandwidth and memory available per process (--processes).")
    var machine = false

    @Option(help: "With --machine: processes (devices) sharing this machine's memory and its bandwidth.")
    var processes = 1

    func validate() throws {
        guard (1...1_000_000).contains(steps), (0...1_000_000).contains(warmup) else {
            throw ValidationError("--steps must be from 1 to 1000000 and --warmup from 0 to 1000000")
        }
        if processes != 1, !machine { throw ValidationError("--processes applies to --machine, which measures it") }
        let known = Set(BenchmarkPreset.all.map(\.name) + ["all"])
        for name in preset where !known.contains(name) {
            throw ValidationError("unknown preset '\(name)'; choose from \(known.sorted().joined(separator: ", "))")
        }
    }

    func run() throws {
        if machine {
            guard processes >= 1 else { throw ValidationError("--processes must be at least 1") }
            let profile = Benchmark.machineProfile(processes: processes)
            let threads = ThreadPool.shared.threadCount
            if json {
                print("{\"threads\": \(threads), \"processes\": \(processes), \"gemm_gflops\": \(profile.gemmGFLOPs), "
                    + "\"memory_gbs\": \(profile.memoryGBs), \"memory_bytes\": \(profile.memoryBytes)}")
            } else {
                print(String(format: "this-cpu, one of %d process%@ with %d thread%@: gemm %.1f GFLOP/s, memory bandwidth %.1f GB/s "
                             + "(STREAM triad), %.1f GB of memory available", processes, processes == 1 ? "" : "es", threads,
                             threads == 1 ? "" : "s", profile.gemmGFLOPs, profile.memoryGBs, profile.memoryBytes / 1e9))
                print(String(format: "for keel plan: --accelerator this-cpu --set cluster.peak_tflops=%.4f --set cluster.memory_bandwidth_gbs=%.2f "
                             + "--set cluster.memory_gb=%.2f", profile.gemmGFLOPs / 1e3, profile.memoryGBs, profile.memoryBytes / 1_073_741_824))
            }
            return
        }
        let presets = preset.contains("all") ? BenchmarkPreset.all : BenchmarkPreset.all.filter { preset.contains($0.name) }
        let measured = Benchmark.sgemmCeiling()
        let ceiling = measured.ceiling
        let bfloat16Ceiling = precision == .bfloat16 ? Benchmark.bfloat16Ceiling() : nil
        let host = HostDescription.current(processes: 1, threads: ThreadPool.shared.threadCount)
        let engine = precision == .bfloat16 ? BFloat16Engine.selected.rawValue : nil
        if !json {
            print("\(host.cpu) (\(host.instructionSets.joined(separator: ", "))), \(host.threadsPerProcess) thread\(host.threadsPerProcess == 1 ? "" : "s"); "
                + "fp32 products: \(BLASLibrary.description)\(engine.map { "; bf16 engine: \($0)" } ?? "")")
            print(String(format: "sgemm ceiling on this machine: %.1f GFLOP/s (OpenBLAS threaded %.1f, Keel's gemm %.1f)",
                         ceiling, measured.openBLAS, measured.keel))
            if let bfloat16Ceiling {
                print(String(format: "bf16 product ceiling (%@, rounding and packing included): %.1f GFLOP/s",
                             BFloat16Engine.selected.rawValue, bfloat16Ceiling))
            }
        }
        for preset in presets {
            let profiler = profile ? Profiler() : nil
            var result = try Benchmark.run(preset, steps: steps, warmup: warmup, sgemmGFLOPs: ceiling,
                                           precision: precision, profiler: profiler)
            result.bfloat16GFLOPs = bfloat16Ceiling
            result.cpu = host.cpu
            result.instructionSets = host.instructionSets
            result.threads = host.threadsPerProcess
            result.blas = BLASLibrary.description
            result.bfloat16Engine = engine
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
                continue
            }
            let sorted = result.msPerStep.sorted()
            print(String(format: "%@ (%.1fM parameters, %d tokens/step): ms/step min %.0f median %.0f max %.0f | %.0f tokens/s | %.1f model GFLOP/s | MFU %.1f%% of sgemm | peak RSS %.0f MB",
                         preset.name, Double(result.parameters) / 1e6, result.tokensPerStep, sorted.first!,
                         result.medianMilliseconds, sorted.last!, result.tokensPerSecond, result.modelGFLOPs,
                         100 * result.utilisation, result.peakRSSMB)
                  + (bfloat16Ceiling.map { String(format: " | %.1f%% of the bf16 ceiling", 100 * result.modelGFLOPs / $0) } ?? ""))
            if let profiler { print(profiler.report()) }
        }
    }
}

extension MatrixPrecision: ExpressibleByArgument {}
