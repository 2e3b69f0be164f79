/// Time of the collectives a layout runs, on rings (Patarasuk and Yuan 2009; NCCL's ring algorithms): each
/// of n devices sends (n − 1)/n of the buffer per pass, in n − 1 steps that each pay the link's latency. A buffer
/// sent in `pieces` collectives of its own (FSDP's layers, ZeRO's buckets) pays those latencies once per piece.
enum CollectiveCost {
    /// All-reduce of a `bytes` buffer over `n` devices: a reduce-scatter then an all-gather,
    /// 2(n − 1)/n · bytes / bandwidth + 2(n − 1) · latency per piece.
    static func allReduce(bytes: Double, devices n: Int, link: Link, pieces: Int = 1) -> Double {
        ring(bytes, devices: n, passes: 2, bandwidth: link.bandwidth, latency: link.latency, pieces: pieces)
    }

    /// Reduce-scatter of a `bytes` buffer (each device ends with 1/n of it summed): (n − 1)/n · bytes /
    /// bandwidth + (n − 1) · latency per piece.
    static func reduceScatter(bytes: Double, devices n: Int, link: Link, pieces: Int = 1) -> Double {
        ring(bytes, devices: n, passes: 1, bandwidth: link.reduceScatterBandwidth ?? link.bandwidth, latency: link.latency,
             pieces: pieces)
    }

    /// All-gather ending with `bytes` on every device: as a reduce-scatter, at the all-gather's rate.
    static func allGather(bytes: Double, devices n: Int, link: Link, pieces: Int = 1) -> Double {
        ring(bytes, devices: n, passes: 1, bandwidth: link.allGatherBandwidth ?? link.bandwidth, latency: link.latency,
             pieces: pieces)
    }

    private static func ring(_ bytes: Double, devices n: Int, passes: Double, bandwidth: Double, latency: Double,
                             pieces: Int) -> Double {
        guard n > 1 else { return 0 }
        let steps = Double(n - 1)
        return passes * (steps / Double(n) * bytes / bandwidth + steps * latency * Double(max(1, pieces)))
    }

    /// One message of `bytes` between two devices.
    static func message(bytes: Double, link: Link) -> Double {
        bytes / link.bandwidth + link.latency
    }
}
