import Foundation
import KeelCore

/// The machines a job's ranks run on, and which machine keeps a copy of which one's in-memory snapshots.
///
/// Machines are told apart by name — `KEEL_MACHINE` when set, else the host name — and numbered by their lowest
/// world rank, so every rank derives the same numbering from the same gathered names. Copies follow Gemini's
/// group placement (Wang et al., SOSP '23): machines are paired (0 with 1, 2 with 3, …) and each keeps its
/// partner's copy; with an odd count the last three form a ring (each keeps the previous one's copy). A lost
/// machine then always leaves its copy on another machine, and two lost machines lose a snapshot only when
/// they are partners, the fewest such pairs any placement with one copy can have.
public struct MachinePlacement: Equatable, Sendable {
    /// Each world rank's machine index.
    public let machineOfRank: [Int]
    /// This process's world rank.
    public let rank: Int

    /// `machineOfRank` as given, for a process of world rank `rank`; machines must be numbered by their lowest
    /// rank (as `discover` numbers them).
    public init(machineOfRank: [Int], rank: Int) {
        self.machineOfRank = machineOfRank
        self.rank = rank
    }

    /// Gathers every rank's machine name over `world` (collective) and numbers the machines.
    public static func discover(world: any Communicator, name: String = localName()) throws -> MachinePlacement {
        // A 64-bit hash stands for the name: two different names colliding would need ~2^32 machines.
        let key = Int64(bitPattern: XXH64.hash(Array(name.utf8)))
        let keys = try world.allGather([key], label: "machine names")
        var index: [Int64: Int] = [:]
        let machines = keys.map { key in
            if let known = index[key] { return known }
            index[key] = index.count
            return index.count - 1
        }
        return MachinePlacement(machineOfRank: machines, rank: world.rank)
    }

    /// This machine's name: `KEEL_MACHINE` if set (tests set it to stand for several machines on one host),
    /// otherwise the host name.
    public static func localName(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let name = environment["KEEL_MACHINE"], !name.isEmpty { return name }
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The number of machines.
    public var count: Int { (machineOfRank.max() ?? 0) + 1 }

    /// This process's machine.
    public var machine: Int { machineOfRank[rank] }

    /// The world ranks on `machine`, ascending.
    public func ranks(on machine: Int) -> [Int] {
        machineOfRank.indices.filter { machineOfRank[$0] == machine }
    }

    /// The lowest rank on `machine`: the one that manages the machine's snapshot directory.
    public func leader(of machine: Int) -> Int {
        machineOfRank.firstIndex(of: machine)!
    }

    /// Whether this process manages its machine's snapshot directory.
    public var isMachineLeader: Bool { leader(of: machine) == rank }

    /// The machine that keeps copies of `machine`'s snapshots; nil when the job runs on one machine.
    public func buddyMachine(of machine: Int) -> Int? {
        let machines = count
        guard machines > 1 else { return nil }
        if machines % 2 == 1, machines >= 3, machine >= machines - 3 {
            // The last three: a ring.
            return machine == machines - 1 ? machines - 3 : machine + 1
        }
        return machine ^ 1
    }

    /// The rank on the buddy machine that keeps a copy of `rank`'s snapshot file: the rank with the same index
    /// among its machine's ranks (modulo their number); nil on one machine.
    public func buddy(of rank: Int) -> Int? {
        let machine = machineOfRank[rank]
        guard let other = buddyMachine(of: machine) else { return nil }
        let local = ranks(on: machine).firstIndex(of: rank)!, there = ranks(on: other)
        return there[local % there.count]
    }

    /// The ranks whose snapshot files `rank` keeps a copy of.
    public func buddied(by rank: Int) -> [Int] {
        machineOfRank.indices.filter { buddy(of: $0) == rank }
    }
}
