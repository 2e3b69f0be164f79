import Foundation
import KeelCore
import KeelData
import KeelComm
import KeelKernels
import KeelModel
import KeelParallel

/// A standard training-step benchmark: a model shape and a batch shape.
public struct BenchmarkPreset: Sendable {
    public let name: String
    public let model: ModelConfig
    public let batch: Int
    public let length: Int

    public init(name: String, model: ModelConfig, batch: Int, length: Int) {
        self.name = name
        self.model = model
        self.batch = batch
        self.length = length
    }

    /// GPT-2 124M (B=4, T=256), a small 6 × 384 shape (B=8, T=256), the Llama variant of each, and GPT-2 124M over
    /// its whole context (B=1, T=1024: the same tokens per step, attention's work four times larger).
    public static let all: [BenchmarkPreset] = {
        func make(_ name: String, _ architecture: Architecture, layers: Int, width: Int, maxLength: Int, batch: Int,
                  length: Int = 256) -> BenchmarkPreset {
            BenchmarkPreset(name: name, model: ModelConfig(
                architecture: architecture, vocabSize: 50_304, layers: layers, heads: width / 64, width: width,
                maxLength: maxLength), batch: batch, length: length)
        }
        return [
            make("gpt2-124m", .gpt2, layers: 12, width: 768, maxLength: 1024, batch: 4),
            make("small", .gpt2, layers: 6, width: 384, maxLength: 256, batch: 8),
            make("gpt2-124m-llama", .llama, layers: 12, width: 768, maxLength: 1024, batch: 4),
            make("small-llama", .llama, layers: 6, width: 384, maxLength: 256, batch: 8),
            make("gpt2-124m-1k", .gpt2, layers: 12, width: 768, maxLength: 1024, batch: 1, length: 1024),
        ]
    }()
}

/// What one benchmark run measured.
public struct BenchmarkResult: Sendable, Codable {
    public var config: String
    public var msPerStep: [Double]
    public var tokensPerStep: Int
    public var parameters: Int
    public var modelFlopsPerStep: Double
    public var sgemmGFLOPs: Double
    public var peakRSSMB: Double
    /// The operand format of the matrix products ("fp32" or "bf16").
    public var precision: String = MatrixPrecision.float32.rawValue
    /// With bf16: the ceiling of Keel's bf16 products on the same shapes as the sgemm ceiling.
    public var bfloat16GFLOPs: Double?
    /// Where it ran: the CPU, its instruction sets that matter, the threads, the BLAS library and its kernels,
    /// and the bf16 engine (with bf16).
    public var cpu: String?
    public var instructionSets: [String]?
    public var threads: Int?
    public var blas: String?
    public var bfloat16Engine: String?

    enum CodingKeys: String, CodingKey {
        case config, parameters, precision, cpu, threads, blas
        case msPerStep = "ms_per_step", tokensPerStep = "tokens_per_step", modelFlopsPerStep = "model_flops_per_step"
        case sgemmGFLOPs = "sgemm_gflops", peakRSSMB = "peak_rss_mb", bfloat16GFLOPs = "bf16_gemm_gflops"
        case instructionSets = "instruction_sets", bfloat16Engine = "bf16_engine"
    }

    public var medianMilliseconds: Double { msPerStep.sorted()[msPerStep.count / 2] }
    public var tokensPerSecond: Double { Double(tokensPerStep) / (medianMilliseconds / 1000) }
    public var modelGFLOPs: Double { modelFlopsPerStep / (medianMilliseconds / 1000) / 1e9 }
    /// Model FLOPs utilisation against the measured sgemm ceiling.
    public var utilisation: Double { modelGFLOPs / sgemmGFLOPs }
}

/// Runs full training steps (forward, cross-entropy, backward, clipping, AdamW) on random tokens — the
/// trainer's own `TrainingStep`.
public enum Benchmark {
    /// Model FLOPs per step: 6 × parameters × tokens for the matrix products of forward and backward, plus
    /// attention's 12 × layers × T × width per token (the convention of the PaLM paper and nanoGPT).
    /// `parameters` should count only weights that enter a matrix product (see `multipliedParameters`).
    public static func modelFlops(_ config: ModelConfig, parameters: Int, tokens: Int, length: Int) -> Double {
        6 * Double(parameters) * Double(tokens) + 12 * Double(config.layers * length * config.width) * Double(tokens)
    }

    /// Parameters that take part in matrix products: all of them except tables that are only looked up
    /// (GPT-2's position embedding, an untied input embedding; a tied token embedding is also the output
    /// head, so it counts).
    public static func multipliedParameters(_ config: ModelConfig) -> Int {
        let positions = config.architecture == .gpt2 ? config.maxLength * config.width : 0
        let tokens = config.tiedEmbeddings ? 0 : config.vocabSize * config.width
        return ParameterTable(config: config).count - positions - tokens
    }

    /// Transformer-shaped and square products on which the ceilings are measured.
    static let ceilingShapes = [(1024, 2304, 768), (1024, 768, 3072), (1024, 3072, 768), (2048, 2048, 2048)]

    /// The machine's sgemm ceiling in GFLOP/s: the best of OpenBLAS's own multi-threaded sgemm and Keel's
    /// `gemm` (single-threaded OpenBLAS calls over Keel's pool) on transformer-shaped and square products.
    public static func sgemmCeiling() -> (ceiling: Double, openBLAS: Double, keel: Double) {
        var bestOpenBLAS = 0.0, bestKeel = 0.0
        let threads = ThreadPool.shared.threadCount
        for (m, n, k) in ceilingShapes {
            bestOpenBLAS = max(bestOpenBLAS, productRate(m: m, n: n, k: k) { a, b, c in
                openBLASGemm(threads: threads, m: m, n: n, k: k, a, b, c)
            })
            bestKeel = max(bestKeel, productRate(m: m, n: n, k: k) { a, b, c in
                gemm(.none, .none, m: m, n: n, k: k, a, b, beta: 0, c)
            })
        }
        return (max(bestOpenBLAS, bestKeel), bestOpenBLAS, bestKeel)
    }

    /// The best rate of Keel's bf16 products (rounding and packing of both operands included) on the
    /// shapes of the sgemm ceiling.
    public static func bfloat16Ceiling() -> Double {
        ceilingShapes.map { m, n, k in
            productRate(m: m, n: n, k: k) { a, b, c in gemm(.none, .none, m: m, n: n, k: k, a, b, beta: 0, c, precision: .bfloat16) }
        }.max()!
    }

    /// What the scale planner needs of this machine as one of `processes` devices (`keel plan --accelerator
    /// this-cpu`): Keel's `gemm` rate on the ceiling's shapes with this process's threads (each process has
    /// cores of its own), the memory bandwidth the threads of all the processes reach together, shared among them,
    /// and the memory available, shared too.
    public static func machineProfile(processes: Int = 1) -> (gemmGFLOPs: Double, memoryGBs: Double, memoryBytes: Double) {
        let gemmRate = ceilingShapes.map { m, n, k in
            productRate(m: m, n: n, k: k) { a, b, c in gemm(.none, .none, m: m, n: n, k: k, a, b, beta: 0, c) }
        }.max()!
        let sharers = max(processes, 1)
        let pool = sharers == 1 ? ThreadPool.shared : ThreadPool(threadCount: ThreadPool.shared.threadCount * sharers)
        return (gemmRate, memoryBandwidth(pool: pool) / Double(sharers), availableMemoryBytes() / Double(sharers))
    }

    /// GB/s of STREAM's triad (a = b + s·c, 12 bytes per element) over 64 MB arrays on `pool`'s threads: the
    /// median of 5 passes after one untimed.
    public static func memoryBandwidth(pool: ThreadPool = .shared) -> Double {
        let count = 16 * 1_048_576
        let a = FloatBuffer(count: count), b = FloatBuffer(count: count), c = FloatBuffer(count: count)
        for i in 0..<count { b.pointer[i] = 1; c.pointer[i] = 2 }
        var seconds: [Double] = []
        for pass in 0..<6 {
            let start = Date()
            pool.parallelFor(count) { range in
                for i in range { a.pointer[i] = b.pointer[i] + 0.5 * c.pointer[i] }
            }
            if pass > 0 { seconds.append(Date().timeIntervalSince(start)) }
        }
        return 12 * Double(count) / seconds.sorted()[seconds.count / 2] / 1e9
    }

    /// MemAvailable from /proc/meminfo, in bytes (0 where it cannot be read).
    public static func availableMemoryBytes() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }

    /// GFLOP/s of `multiply` on m×k and k×n operands, repeated for 0.3 s after one untimed call.
    private static func productRate(
        m: Int, n: Int, k: Int,
        _ multiply: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) -> Double {
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a.pointer[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b.pointer[i] = Float(i % 5) * 0.01 }
        multiply(a.pointer, b.pointer, c.pointer)
        var calls = 0
        let start = Date()
        while Date().timeIntervalSince(start) < 0.3 {
            multiply(a.pointer, b.pointer, c.pointer)
            calls += 1
        }
        return 2 * Double(m * n * k) * Double(calls) / Date().timeIntervalSince(start) / 1e9
    }

    /// Peak resident memory of this process (VmHWM), in MB.
    public static func peakResidentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes / 1024
    }

    /// `warmup` untimed steps, then `steps` timed ones.
    public static func run(_ preset: BenchmarkPreset, steps: Int, warmup: Int, sgemmGFLOPs: Double,
                           precision: MatrixPrecision = .float32, profiler: Profiler? = nil) throws -> BenchmarkResult {
        // The trainer's own step on one process: one micro-batch, AdamW, clipping at 1.
        let settings = TrainConfig.TrainingSettings(
            seed: 1, steps: warmup + steps, batchSize: preset.batch, sequenceLength: preset.length, gradientAccumulation: 1,
            learningRate: 3e-4, minLearningRate: 3e-4, warmupSteps: 0, adamW: AdamWSettings(), gradientClip: 1,
            decayEmbeddings: false, evalEvery: 0, evalBatches: 1, precision: precision)
        let trainingStep = try TrainingStep(
            model: preset.model, layers: [0..<preset.model.layers], schedule: .oneForwardOneBackward, virtualStages: 1,
            training: settings, distributed: TrainConfig.DistributedSettings(bucketMegabytes: 25, zeroStage: 0, timeoutSeconds: 60),
            groups: .singleProcess())
        let model = trainingStep.chunks[0]
        model.profiler = profiler
        var random = RandomStream(seed: 2)
        let tokens = (0..<((steps + warmup + 1) * preset.batch * (preset.length + 1))).map { _ in
            Int32(random.nextInt(below: preset.model.vocabSize))
        }
        let loader = try TokenLoader(windows: TokenWindows(segments: [.memory(tokens)], length: preset.length),
                                     batch: preset.batch, seed: 3)
        defer { loader.stop() }
        var milliseconds: [Double] = []
        for step in 1...(warmup + steps) {
            if step == warmup + 1 { profiler?.reset() }
            let start = Date()
            profiler?.stepStarted()
            _ = try trainingStep.run(number: step, learningRate: 3e-4, loader: loader)
            profiler?.stepEnded()
            if step > warmup { milliseconds.append(Date().timeIntervalSince(start) * 1000) }
        }
        let tokensPerStep = preset.batch * preset.length
        return BenchmarkResult(
            config: preset.name, msPerStep: milliseconds, tokensPerStep: tokensPerStep, parameters: model.table.count,
            modelFlopsPerStep: modelFlops(preset.model, parameters: multipliedParameters(preset.model),
                                          tokens: tokensPerStep, length: preset.length),
            sgemmGFLOPs: sgemmGFLOPs, peakRSSMB: peakResidentMegabytes(), precision: precision.rawValue)
    }
}
