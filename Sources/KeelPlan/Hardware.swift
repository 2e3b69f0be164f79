import KeelCore

/// One device the planner places work on: its dense bf16 matrix throughput, memory and memory bandwidth.
public struct Accelerator: Sendable, Equatable, Codable {
    /// A name for tables.
    public var name: String
    /// Dense (not sparse) bf16 tensor throughput, FLOP/s.
    public var peakFLOPs: Double
    /// Memory per device, bytes.
    public var memoryBytes: Double
    /// Memory bandwidth, bytes/s: what bounds the passes that are not matrix products.
    public var memoryBandwidth: Double

    public init(name: String, peakFLOPs: Double, memoryBytes: Double, memoryBandwidth: Double) {
        self.name = name
        self.peakFLOPs = peakFLOPs
        self.memoryBytes = memoryBytes
        self.memoryBandwidth = memoryBandwidth
    }

    /// Datasheet figures (NVIDIA's A100, H100 SXM, H200 and HGX B200 datasheets; dense bf16, without sparsity). The
    /// datasheets' memory "GB" are binary: an A100 80GB has 81,920 MiB (nvidia-smi), 80 GiB.
    public static let presets: [Accelerator] = [
        Accelerator(name: "a100-80gb", peakFLOPs: 312e12, memoryBytes: 80 * gibibyte, memoryBandwidth: 2.039e12),
        Accelerator(name: "h100-sxm", peakFLOPs: 989e12, memoryBytes: 80 * gibibyte, memoryBandwidth: 3.35e12),
        Accelerator(name: "h200", peakFLOPs: 989e12, memoryBytes: 141 * gibibyte, memoryBandwidth: 4.8e12),
        Accelerator(name: "b200", peakFLOPs: 2250e12, memoryBytes: 180 * gibibyte, memoryBandwidth: 7.7e12),
    ]
    private static let gibibyte = 1_073_741_824.0

    /// The preset called `name`, or an error listing them.
    public static func preset(_ name: String) throws -> Accelerator {
        guard let found = presets.first(where: { $0.name == name }) else {
            throw KeelError("plan: unknown accelerator '\(name)' (known: \(presets.map(\.name).joined(separator: ", ")), "
                + "or give --set cluster.peak_tflops=… --set cluster.memory_gb=… --set cluster.memory_bandwidth_gbs=…)")
        }
        return found
    }
}

/// A link between devices as one device sees it: bandwidth in each direction, and the latency of one step of
/// a collective over it.
public struct Link: Sendable, Equatable, Codable {
    /// A name for tables.
    public var name: String
    /// Bytes/s one device can send (and at the same time receive).
    public var bandwidth: Double
    /// Seconds per message or per step of a ring.
    public var latency: Double
    /// Where a collective library's reduce-scatter or all-gather reaches another rate than its all-reduce
    /// (measured by `keel collectives --link`; NCCL's rings reach the same): their per-device send rates.
    public var reduceScatterBandwidth: Double?
    public var allGatherBandwidth: Double?

    public init(name: String, bandwidth: Double, latency: Double, reduceScatterBandwidth: Double? = nil,
                allGatherBandwidth: Double? = nil) {
        self.name = name
        self.bandwidth = bandwidth
        self.latency = latency
        self.reduceScatterBandwidth = reduceScatterBandwidth
        self.allGatherBandwidth = allGatherBandwidth
    }

    /// Per-GPU figures: NVLink 3/4/5 through NVSwitch (A100, H100, B200: 600, 900, 1800 GB/s both directions
    /// together), and one 200 or 400 Gb/s NIC per GPU for InfiniBand HDR / NDR and RoCE. Latencies are typical
    /// of one NCCL ring step on each.
    public static let presets: [Link] = [
        Link(name: "nvlink3", bandwidth: 300e9, latency: 3e-6),
        Link(name: "nvlink4", bandwidth: 450e9, latency: 3e-6),
        Link(name: "nvlink5", bandwidth: 900e9, latency: 3e-6),
        Link(name: "ib-hdr", bandwidth: 25e9, latency: 6e-6),
        Link(name: "ib-ndr", bandwidth: 50e9, latency: 6e-6),
        Link(name: "roce-400", bandwidth: 50e9, latency: 8e-6),
    ]

    /// The preset called `name`, or an error listing them.
    public static func preset(_ name: String) throws -> Link {
        guard let found = presets.first(where: { $0.name == name }) else {
            throw KeelError("plan: unknown link '\(name)' (known: \(presets.map(\.name).joined(separator: ", ")))")
        }
        return found
    }
}

/// The machines a run is planned for: identical nodes of `devicesPerNode` accelerators, a fast link inside a
/// node and a slower one between nodes.
public struct Cluster: Sendable, Equatable, Codable {
    public var accelerator: Accelerator
    public var devicesPerNode: Int
    public var nodes: Int
    /// Between devices of one node.
    public var intraNode: Link
    /// Between nodes, per device.
    public var interNode: Link

    public init(accelerator: Accelerator, devicesPerNode: Int, nodes: Int, intraNode: Link, interNode: Link) {
        self.accelerator = accelerator
        self.devicesPerNode = devicesPerNode
        self.nodes = nodes
        self.intraNode = intraNode
        self.interNode = interNode
    }

    /// All devices.
    public var devices: Int { devicesPerNode * nodes }

    /// The link a group of `size` devices, `stride` ranks apart, communicates over: inside a node when the
    /// group fits in one, otherwise the inter-node link, which a ring crossing nodes is limited by.
    public func link(groupSize size: Int, stride: Int) -> Link {
        size * stride <= devicesPerNode ? intraNode : interNode
    }

    /// Checks that every figure is usable and names the one that is not.
    public func validate() throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw KeelError("plan: \(message)") } }
        // Bounded so that counting layouts (divisors of the devices) and their products stay small.
        try require((1...4096).contains(devicesPerNode), "devices per node must be from 1 to 4096 (got \(devicesPerNode))")
        try require(nodes >= 1 && nodes <= (1 << 20) / devicesPerNode,
                    "nodes must be at least 1, and the devices at most \(1 << 20) (got \(nodes) nodes of \(devicesPerNode))")
        let a = accelerator
        try require(a.peakFLOPs > 0 && a.peakFLOPs.isFinite, "the accelerator's peak FLOP/s must be positive")
        try require(a.memoryBytes > 0 && a.memoryBytes.isFinite, "the accelerator's memory must be positive")
        try require(a.memoryBandwidth > 0 && a.memoryBandwidth.isFinite, "the accelerator's memory bandwidth must be positive")
        for link in [intraNode, interNode] {
            for rate in [link.bandwidth, link.reduceScatterBandwidth ?? 1, link.allGatherBandwidth ?? 1] {
                try require(rate > 0 && rate.isFinite, "link \(link.name): bandwidth must be positive")
            }
            try require(link.latency >= 0 && link.latency.isFinite, "link \(link.name): latency must be non-negative")
        }
    }
}
