import KeelComm
import KeelCore
import KeelModel

/// Runs one pipeline rank's schedule — its list of `PipelineAction`s — on its model chunks over the pipeline
/// group. Sends and receives are non-blocking: a receive is posted when the schedule reaches it and waited
/// for by the pass that needs it, and a send goes out as soon as its pass is done, so transfers overlap the
/// passes in between. A peer that never answers ends the step within the communicator's timeout, with an
/// error naming the transfer (and, over MPI, the rank) it was waiting on.
///
/// Each forward pass takes a free activation slot of its chunk and its backward pass (for a split backward,
/// its weight half) gives it back, so a chunk holds only as many micro-batches' activations as the schedule
/// keeps in flight. What a pass sends is copied out of its slot first, so the slot can be reused while the
/// message is on its way; message buffers return to a pool once delivered (received data once its pass has
/// read it), so they too scale with what is in flight, not with the micro-batches.
public final class PipelineExecutor {
    /// This rank's model chunks: chunk c is global stage c · p + rank.
    public let chunks: [Transformer]
    public let pipeline: any Communicator
    public let actions: [PipelineAction]
    private let batch: Int
    private let length: Int
    private let stageCount: Int
    private var pool: [FloatBuffer] = []
    /// Posted receives, with the receive action (for the timeline) and where the data lands.
    private var incoming: [Transfer: (action: PipelineAction, buffer: FloatBuffer, request: CommunicationRequest)] = [:]
    private var sends: [(buffer: FloatBuffer, request: CommunicationRequest)] = []
    private var freeSlots: [[Int]]
    private var slotCount: [Int]
    private var slots: [MicroBatchChunk: Int] = [:]

    /// A message of one micro-batch's activations or gradients, named by the global stage that receives it.
    private struct Transfer: Hashable {
        let gradient: Bool
        let microBatch: Int
        let receivingStage: Int
    }

    /// `chunks` must be the stages of this rank in `pipeline` (of p ranks), chunk c being global stage
    /// c · p + rank; `actions` its training schedule; every micro-batch is at most `batch` sequences of
    /// `length` tokens.
    public init(chunks: [Transformer], pipeline: any Communicator, actions: [PipelineAction], batch: Int, length: Int) {
        self.chunks = chunks
        self.pipeline = pipeline
        self.actions = actions
        self.batch = batch
        self.length = length
        stageCount = chunks.count * pipeline.size
        freeSlots = chunks.map { _ in [] }
        slotCount = chunks.map { _ in 0 }
    }

    /// The most micro-batches whose activations each chunk held at once so far (its slots).
    public var activationSlots: [Int] { slotCount }

    /// Something this rank did in the last `run` and when (monotonic seconds): a forward or backward pass, the
    /// wait for a receive that a pass needed (the action is the receive), or a send being posted (an instant).
    public struct TimedPass: Sendable {
        public let action: PipelineAction
        public let start: Double
        public let end: Double

        /// Whether this is compute (a pass), as opposed to waiting for or posting a message.
        public var isPass: Bool {
            switch action {
            case .forward, .backward, .backwardInput, .backwardWeight: true
            default: false
            }
        }
    }

    /// The last `run` or `evaluate`, in order.
    public private(set) var timeline: [TimedPass] = []
    /// When the last `run` or `evaluate` began and ended on this rank.
    public private(set) var interval: (start: Double, end: Double) = (0, 0)

    /// The idle share of this rank's last run: 1 − time in passes / the run's time.
    public var measuredBubble: Double {
        let busy = timeline.reduce(0) { $0 + ($1.isPass ? $1.end - $1.start : 0) }
        let wall = interval.end - interval.start
        return wall > 0 ? max(0, 1 - busy / wall) : 0
    }

    /// Runs the training schedule once: micro-batch k reads its token ids from `inputs(k)` on the first stage
    /// and its targets from `targets(k)` on the last, and every loss is scaled by `lossScale` (1/m averages the
    /// micro-batches). Gradients are added into each chunk's buffer. Returns the micro-batches' losses in
    /// micro-batch order on the rank holding the last stage, nothing on the others. `label` names the step in
    /// errors.
    /// With `documents`, micro-batch k's sequences pack documents (`Transformer.forward`'s `documents`), on every
    /// stage; with `weights`, micro-batch k's loss is scaled by `lossScale · weights(k)` (micro-batches that count
    /// different numbers of targets).
    public func run(inputs: (Int) -> UnsafePointer<Int32>, targets: (Int) -> UnsafePointer<Int32>,
                    documents: ((Int) -> UnsafePointer<Int32>)? = nil, lossScale: Float, weights: ((Int) -> Float)? = nil,
                    label: String) throws -> [Float] {
        try execute(actions, rows: { _ in self.batch }, inputs: inputs, targets: targets, documents: documents,
                    lossScale: { lossScale * (weights?($0) ?? 1) }, label: label)
    }

    /// Runs `microBatches` micro-batches forward only (validation), micro-batch k having `rows(k)` ≤ `batch`
    /// sequences; returns each one's mean loss, in order, on the rank holding the last stage.
    public func evaluate(microBatches: Int, rows: @escaping (Int) -> Int, inputs: (Int) -> UnsafePointer<Int32>,
                         targets: (Int) -> UnsafePointer<Int32>, documents: ((Int) -> UnsafePointer<Int32>)? = nil,
                         label: String) throws -> [Float] {
        let actions = PipelineSchedule.forwardOnly(stages: pipeline.size, virtualStages: chunks.count,
                                                   microBatches: microBatches, rank: pipeline.rank)
        return try execute(actions, rows: rows, inputs: inputs, targets: targets, documents: documents, lossScale: nil,
                           label: label)
    }

    private func execute(_ actions: [PipelineAction], rows: (Int) -> Int, inputs: (Int) -> UnsafePointer<Int32>,
                         targets: (Int) -> UnsafePointer<Int32>, documents: ((Int) -> UnsafePointer<Int32>)?,
                         lossScale: ((Int) -> Float)?, label: String) throws -> [Float] {
        var losses: [(microBatch: Int, loss: Float)] = []
        timeline.removeAll(keepingCapacity: true)
        interval.start = monotonicSeconds()
        for action in actions {
            switch action {
            case let .forward(microBatch, chunk):
                let model = chunks[chunk], stage = globalStage(chunk), slot = acquireSlot(chunk, microBatch)
                let n = rows(microBatch)
                let target = model.isLastStage ? targets(microBatch) : nil
                let input = model.isFirstStage
                    ? nil : try arrived(Transfer(gradient: false, microBatch: microBatch, receivingStage: stage))
                let start = monotonicSeconds()
                let loss: Float
                let packed = documents?(microBatch)
                if let input {
                    loss = model.forward(activations: input.pointer, targets: target, batch: n, length: length,
                                         lossScale: lossScale?(microBatch), slot: slot, documents: packed)
                    pool.append(input)
                } else {
                    loss = model.forward(inputs: inputs(microBatch), targets: target, batch: n, length: length,
                                         lossScale: lossScale?(microBatch), slot: slot, documents: packed)
                }
                if model.isLastStage { losses.append((microBatch, loss)) }
                timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
                if !model.isLastStage {
                    hold(model.output(slot: slot), count: elements(n),
                         for: Transfer(gradient: false, microBatch: microBatch, receivingStage: stage + 1))
                }
                // Without a backward pass to come, the slot is free again at once.
                if lossScale == nil { releaseSlot(MicroBatchChunk(microBatch: microBatch, chunk: chunk)) }
            case let .backward(microBatch, chunk), let .backwardInput(microBatch, chunk):
                let model = chunks[chunk], stage = globalStage(chunk), key = MicroBatchChunk(microBatch: microBatch, chunk: chunk)
                let slot = slots[key]!
                let gradient = model.isLastStage
                    ? nil : try arrived(Transfer(gradient: true, microBatch: microBatch, receivingStage: stage))
                let start = monotonicSeconds()
                if case .backward = action {
                    if let gradient { model.backward(outputGradient: gradient.pointer, slot: slot) } else { model.backward(slot: slot) }
                } else {
                    model.backwardInput(outputGradient: gradient.map { UnsafePointer($0.pointer) }, slot: slot)
                }
                if let gradient { pool.append(gradient) }
                timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
                if !model.isFirstStage {
                    hold(model.inputGradient(slot: slot), count: elements(rows(microBatch)),
                         for: Transfer(gradient: true, microBatch: microBatch, receivingStage: stage - 1))
                }
                // A split backward still needs the slot's activations for its weight half.
                if case .backward = action { releaseSlot(key) }
            case let .backwardWeight(microBatch, chunk):
                let key = MicroBatchChunk(microBatch: microBatch, chunk: chunk), start = monotonicSeconds()
                chunks[chunk].backwardWeight(slot: slots[key]!)
                releaseSlot(key)
                timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
            case let .sendActivation(microBatch, chunk, to):
                send(Transfer(gradient: false, microBatch: microBatch, receivingStage: globalStage(chunk) + 1), count: elements(rows(microBatch)),
                     to: to, label: label, action: action)
            case let .sendGradient(microBatch, chunk, to):
                send(Transfer(gradient: true, microBatch: microBatch, receivingStage: globalStage(chunk) - 1), count: elements(rows(microBatch)),
                     to: to, label: label, action: action)
            case let .receiveActivation(microBatch, chunk, from):
                receive(Transfer(gradient: false, microBatch: microBatch, receivingStage: globalStage(chunk)), count: elements(rows(microBatch)),
                        from: from, label: label, action: action)
            case let .receiveGradient(microBatch, chunk, from):
                receive(Transfer(gradient: true, microBatch: microBatch, receivingStage: globalStage(chunk)), count: elements(rows(microBatch)),
                        from: from, label: label, action: action)
            case .optimizerStep:
                break
            }
        }
        for (buffer, request) in sends {
            try request.wait()
            pool.append(buffer)
        }
        sends.removeAll()
        interval.end = monotonicSeconds()
        return losses.sorted { $0.microBatch < $1.microBatch }.map(\.loss)
    }

    private func globalStage(_ chunk: Int) -> Int { chunk * pipeline.size + pipeline.rank }

    /// Floats in a message of `rows` sequences.
    private func elements(_ rows: Int) -> Int { chunks[0].activationCount(batch: rows, length: length) }

    /// A message buffer of `batch` sequences: a delivered send's, or a new one.
    private func takeBuffer() -> FloatBuffer {
        if let completed = sends.firstIndex(where: { $0.request.isComplete }) {
            pool.append(sends.remove(at: completed).buffer)
        }
        return pool.popLast() ?? FloatBuffer(count: elements(batch))
    }

    private func acquireSlot(_ chunk: Int, _ microBatch: Int) -> Int {
        let slot = freeSlots[chunk].popLast() ?? {
            slotCount[chunk] += 1
            return slotCount[chunk] - 1
        }()
        slots[MicroBatchChunk(microBatch: microBatch, chunk: chunk)] = slot
        return slot
    }

    private func releaseSlot(_ key: MicroBatchChunk) {
        freeSlots[key.chunk].append(slots.removeValue(forKey: key)!)
    }

    /// Data that a send action of this schedule will post, copied out of the slot now.
    private var held: [Transfer: FloatBuffer] = [:]

    private func hold(_ source: UnsafePointer<Float>, count: Int, for transfer: Transfer) {
        let buffer = takeBuffer()
        buffer.pointer.update(from: source, count: count)
        held[transfer] = buffer
    }

    private func send(_ transfer: Transfer, count: Int, to peer: Int, label: String, action: PipelineAction) {
        let buffer = held.removeValue(forKey: transfer)!
        let now = monotonicSeconds()
        sends.append((buffer, pipeline.startSend(UnsafeBufferPointer(start: buffer.pointer, count: count), to: peer,
                                                 tag: tag(transfer), label: "\(label): \(describe(transfer)) to pipeline rank \(peer)")))
        timeline.append(TimedPass(action: action, start: now, end: now))
    }

    private func receive(_ transfer: Transfer, count: Int, from peer: Int, label: String, action: PipelineAction) {
        let buffer = takeBuffer()
        incoming[transfer] = (action, buffer,
                              pipeline.startReceive(UnsafeMutableBufferPointer(start: buffer.pointer, count: count),
                                                    from: peer, tag: tag(transfer),
                                                    label: "\(label): \(describe(transfer)) from pipeline rank \(peer)"))
    }

    /// The received data of `transfer`, once it has arrived (the wait goes into the timeline); the caller
    /// returns the buffer to the pool when its pass has read it.
    private func arrived(_ transfer: Transfer) throws -> FloatBuffer {
        guard let (action, buffer, request) = incoming.removeValue(forKey: transfer) else {
            throw KeelError("pipeline: the schedule runs a pass before receiving its \(describe(transfer))")
        }
        let start = monotonicSeconds()
        try request.wait()
        timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
        return buffer
    }

    /// Unique per message of a step, and the same on both ends.
    private func tag(_ transfer: Transfer) -> Int {
        (transfer.microBatch * stageCount + transfer.receivingStage) * 2 + (transfer.gradient ? 1 : 0)
    }

    private func describe(_ transfer: Transfer) -> String {
        "\(transfer.gradient ? "gradient" : "activations") of micro-batch \(transfer.microBatch) for stage \(transfer.receivingStage)"
    }
}
