import Foundation
import KeelCore
import KeelModel

/// The least memory a training job's state takes on a machine — weights, gradients and AdamW's two moments, as ZeRO
/// shards them; activations come on top — against what the machine (or its cgroup) can hold. Buffers are mapped
/// lazily, so a model too large for the machine would otherwise start, and be killed by the kernel without a message
/// (SIGKILL) once initialisation writes its pages.
public enum TrainingMemory {
    /// Bytes of weights, gradients and the two moments of a model of `parameters` over the whole job: 4 bytes each per
    /// replica, except what ZeRO shards over the `replicas` (stage 1 the moments, 2 also the gradients, 3 also the
    /// weights), held once.
    public static func stateBytes(parameters: Int, replicas: Int, zeroStage: Int) -> Double {
        let held = { (sharded: Bool) in Double(parameters) * (sharded ? 1 : Double(replicas)) }
        return 4 * held(zeroStage >= 3) + 4 * held(zeroStage >= 2) + 8 * held(zeroStage >= 1)
    }

    /// What to do about a machine's share `bytes` of the state: an error when it exceeds all that `limit` can hold,
    /// a warning when it exceeds what is free now, else nil (`isError` false).
    public static func verdict(bytes: Double, parameters: Int, processesHere: Int, limit: MemoryLimit) -> (message: String, isError: Bool)? {
        let need = "the weights, gradients and AdamW moments alone take at least \(gib(bytes)) on this machine "
            + "(\(parameters) parameters; \(processesHere) process\(processesHere == 1 ? "" : "es") here; activations come on top)"
        if bytes > limit.total {
            return ("\(need), more than \(limit.source) can hold (\(gib(limit.total))): shard them (distributed.zero_stage, with several replicas), spread the job over more machines, or train a smaller model", true)
        }
        if bytes > limit.available {
            return ("\(need), more than is free now (\(gib(limit.available)) of \(gib(limit.total))): the kernel may kill the job for lack of memory", false)
        }
        return nil
    }

    /// Throws, before anything is allocated, when this machine cannot hold its share of `config`'s training state
    /// (`processes` in the job, `processesHere` of them on this machine); `warn` gets the warning when it does not fit
    /// what is free now.
    public static func check(_ config: TrainConfig, processes: Int, processesHere: Int, warn: (String) -> Void) throws {
        guard let limit = MemoryLimit.current() else { return }
        let parameters = ParameterTable(config: config.model).count
        let replicas = processes / (config.parallel.pipeline * config.parallel.tensor)
        let job = stateBytes(parameters: parameters, replicas: max(1, replicas), zeroStage: config.distributed.zeroStage)
        let here = job * Double(max(1, processesHere)) / Double(max(1, processes))
        guard let (message, isError) = verdict(bytes: here, parameters: parameters, processesHere: processesHere, limit: limit) else { return }
        if isError { throw KeelError(message, rulesOutRestart: true) }
        warn("warning: " + message)
    }

    private static func gib(_ bytes: Double) -> String {
        String(format: "%.1f GiB", bytes / Double(1 << 30))
    }
}
