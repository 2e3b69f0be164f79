import KeelCore

/// This process's process groups in a `Mesh`: one communicator along each axis, and the pair of first and
/// last pipeline stages that hold the token embedding and a tied output head. Built once at start-up
/// (collectively, by every rank), then handed to whatever needs a group, so code names groups, never ranks.
public final class ParallelState {
    public let mesh: Mesh
    /// Every process of the job.
    public let world: any Communicator
    /// The ranks that hold the same part of the model and average their gradients.
    public let data: any Communicator
    /// The ranks that hold consecutive stages of one model replica, in stage order.
    public let pipeline: any Communicator
    /// The ranks that split each layer's matrices between them.
    public let tensor: any Communicator
    /// The first and the last pipeline stage of this rank's replica (one rank when there is one stage);
    /// nil on the stages between them.
    public let embedding: (any Communicator)?

    /// This rank's position in the mesh.
    public var coordinates: Mesh.Coordinates { mesh.coordinates(of: world.rank) }

    /// Splits `world` into `mesh`'s groups (every rank of `world` must call it). An axis of extent 1 gets a
    /// single-process communicator and one that spans the world gets `world` itself, so a purely
    /// data-parallel job communicates exactly as before.
    public init(mesh: Mesh, world: any Communicator) throws {
        guard mesh.worldSize == world.size else {
            throw KeelError("parallel layout: \(mesh.pipeline) pipeline × \(mesh.data) data × \(mesh.tensor) tensor ranks need \(mesh.worldSize) processes, the job has \(world.size)")
        }
        func group(_ axis: Mesh.Axis) throws -> any Communicator {
            switch mesh.extent(axis) {
            case 1: return SingleProcessCommunicator()
            case world.size: return world
            default: return try mesh.communicator(axis, from: world)
            }
        }
        self.mesh = mesh
        self.world = world
        pipeline = try group(.pipeline)
        data = try group(.data)
        tensor = try group(.tensor)
        if mesh.pipeline == 1 {
            embedding = SingleProcessCommunicator()
        } else {
            // Every rank takes part in the split; the stages between the ends each get a group of their own.
            let ends = mesh.embeddingGroups().first { $0.contains(world.rank) }
            let color = ends?.first ?? world.size + world.rank
            let split = try world.split(color: color, key: ends?.firstIndex(of: world.rank) ?? 0)
            embedding = ends == nil ? nil : split
        }
    }

    /// One process: every group is that process.
    public static func singleProcess() -> ParallelState {
        // A one-rank mesh over a single-process communicator cannot fail.
        try! ParallelState(mesh: Mesh(worldSize: 1), world: SingleProcessCommunicator())
    }
}
