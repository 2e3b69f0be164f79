import KeelCore

/// The layout of world ranks as a `pipeline × data × tensor` grid, tensor innermost so that the
/// tensor-parallel group (the heaviest traffic) is consecutive ranks, which launchers place on one machine.
///
/// rank = (pipelineIndex · data + dataIndex) · tensor + tensorIndex. Every process group of a run comes from
/// one `Mesh`, so all ranks agree on who talks to whom.
public struct Mesh: Equatable, Sendable {
    public enum Axis: String, Sendable, CaseIterable {
        case pipeline, data, tensor
    }

    /// A rank's position on each axis.
    public struct Coordinates: Equatable, Sendable {
        public var pipeline: Int
        public var data: Int
        public var tensor: Int

        public init(pipeline: Int, data: Int, tensor: Int) {
            self.pipeline = pipeline
            self.data = data
            self.tensor = tensor
        }
    }

    public let pipeline: Int
    public let data: Int
    public let tensor: Int

    /// Lays out `worldSize` ranks with the given pipeline and tensor sizes; the data-parallel size is what
    /// remains. Throws when they do not divide the world.
    public init(worldSize: Int, pipeline: Int = 1, tensor: Int = 1) throws {
        guard pipeline >= 1, tensor >= 1, worldSize % (pipeline * tensor) == 0 else {
            throw KeelError("parallel layout: pipeline (\(pipeline)) × tensor (\(tensor)) does not divide the \(worldSize) processes")
        }
        self.pipeline = pipeline
        self.tensor = tensor
        data = worldSize / (pipeline * tensor)
    }

    public var worldSize: Int { pipeline * data * tensor }

    public func coordinates(of rank: Int) -> Coordinates {
        precondition(rank >= 0 && rank < worldSize)
        return Coordinates(pipeline: rank / (data * tensor), data: rank / tensor % data, tensor: rank % tensor)
    }

    public func rank(at position: Coordinates) -> Int {
        (position.pipeline * data + position.data) * tensor + position.tensor
    }

    /// The ranks that share every coordinate of `rank` except `axis`, in order along `axis`.
    public func group(_ axis: Axis, containing rank: Int) -> [Int] {
        let origin = coordinates(of: rank)
        return (0..<extent(axis)).map { index in
            var position = origin
            switch axis {
            case .pipeline: position.pipeline = index
            case .data: position.data = index
            case .tensor: position.tensor = index
            }
            return self.rank(at: position)
        }
    }

    /// Every group along `axis`; together they partition the world.
    public func groups(_ axis: Axis) -> [[Int]] {
        var seen = Set<Int>(), result: [[Int]] = []
        for rank in 0..<worldSize where !seen.contains(rank) {
            let members = group(axis, containing: rank)
            seen.formUnion(members)
            result.append(members)
        }
        return result
    }

    /// The first and last pipeline stage of each (data, tensor) position: the ranks that hold the token
    /// embedding and a tied output head, whose gradients must be summed. One rank when there is one stage.
    public func embeddingGroups() -> [[Int]] {
        groups(.pipeline).map { stages in stages.count == 1 ? stages : [stages.first!, stages.last!] }
    }

    /// Number of ranks along `axis`.
    public func extent(_ axis: Axis) -> Int {
        switch axis {
        case .pipeline: pipeline
        case .data: data
        case .tensor: tensor
        }
    }

    /// The communicator of `world`'s rank along `axis` (collective over `world`).
    public func communicator(_ axis: Axis, from world: any Communicator) throws -> any Communicator {
        let members = group(axis, containing: world.rank)
        // The group's lowest rank identifies it; the position along the axis orders it.
        return try world.split(color: members[0], key: members.firstIndex(of: world.rank)!)
    }
}
